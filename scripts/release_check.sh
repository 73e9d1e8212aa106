#!/usr/bin/env bash
# scripts/release_check.sh SRC OUT - builds the release `herald` (what `make
# demo` builds: -O2, -Werror) in OUT, as one test of the suite (CTest
# build/release): GCC finds some warnings only when it optimises
# (maybe-uninitialized), so a debug-only suite could pass while `make demo`
# would not build. Prints the compiler's errors and fails on any.
set -euo pipefail
src=$1
out=$2
cmake -S "$src" -B "$out" -DCMAKE_BUILD_TYPE=Release >/dev/null
if ! nice make -C "$out" -j1 herald >"$out.log" 2>&1; then
	grep -E "error|warning" "$out.log" | head -n 40 || tail -n 40 "$out.log"
	exit 1
fi
test -x "$out/herald"
echo "release build of herald: ok"
