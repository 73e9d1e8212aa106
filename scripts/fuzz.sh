#!/usr/bin/env bash
# The fuzzing CI step (README "Fuzzing"; ./test.sh runs it after the suite):
# builds the libFuzzer targets (fuzz/fuzz_<name>.c) with clang, then runs
# each on its seed corpus (fuzz/corpus/<name>/) and its regression inputs
# (fuzz/regress/<name>/: every input that once crashed it), plus a few
# seconds of new fuzzing. Any crash, leak, sanitizer report or timeout
# fails the step and leaves the input in $BUILD/fuzz-artifacts/.
#
# Usage: scripts/fuzz.sh [target...]   (default: all)
# Environment: FUZZ_SECONDS (new fuzzing per target, default 3), FUZZ_JOBS
# (targets run at once, default 2), BUILD (default build-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-fuzz}
SECS=${FUZZ_SECONDS:-3}
JOBS=${FUZZ_JOBS:-2}

CC=clang CXX=clang++ cmake -S . -B "$BUILD" -DHERALD_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
if (($#)); then
  targets=("$@")
else
  targets=()
  for f in fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c | sed 's/^fuzz_//')"); done
fi
cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]/#/fuzz_}" >/dev/null

# A leak inside libfyaml is not Herald's (fuzz/lsan.supp says which); any
# other leak fails the step.
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$PWD/fuzz/lsan.supp"

art="$BUILD/fuzz-artifacts"
mkdir -p "$art"
run_one() {
  # -max_len: inputs grow to 16 KiB; a corpus input longer than that would be
  # cut when loaded, so the limit is raised to the longest one (the .xlsx
  # fixtures are whole files).
  local t=$1 ml=16384 log rc=0 f sz
  for f in "fuzz/corpus/$t"/* "fuzz/regress/$t"/*; do
    [ -f "$f" ] || continue
    sz=$(stat -c %s "$f")
    ((sz > ml)) && ml=$sz
  done
  # New inputs go to a scratch directory (first on the line), never into
  # the committed corpus.
  local scratch="$BUILD/fuzz-scratch/$t"
  rm -rf "$scratch"
  mkdir -p "$scratch"
  local dirs=("fuzz/corpus/$t")
  [ -d "fuzz/regress/$t" ] && dirs+=("fuzz/regress/$t")
  log="$art/$t.log"
  # -timeout: no input takes a second; 30 s is a hang even on a busy machine.
  "$BUILD/fuzz/fuzz_$t" -max_total_time="$SECS" -timeout=30 -max_len=$ml -print_final_stats=1 \
    -artifact_prefix="$art/$t-" "$scratch" "${dirs[@]}" >"$log" 2>&1 || rc=$?
  rm -rf "$scratch"
  local runs cov
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  if ((rc)); then
    echo "fuzz_$t: FAILED (exit $rc), see $log:"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -5
    return 1
  fi
  echo "fuzz_$t: ok, ${runs:-?} runs, ${cov:-?}"
}
export -f run_one
export BUILD SECS art
printf '%s\n' "${targets[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one {}'
