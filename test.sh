#!/bin/sh
# The README's second command: on a bare Debian 12 (apt and nothing else, as
# root or with sudo) installs what is missing, builds Herald with
# AddressSanitizer and UBSan and runs the whole suite (unit + integration +
# the fuzzing step, test fuzz/ci: clang builds every fuzz target and runs it
# on its corpus and regression inputs, plus a few seconds of new fuzzing).
set -e
cd "$(dirname "$0")"
scripts/deps.sh test
scripts/deps.sh fuzz
exec make test
