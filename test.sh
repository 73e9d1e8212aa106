#!/bin/sh
# The README's second command: on a bare Debian 12 (apt and nothing else, as
# root or with sudo) installs what is missing, builds Herald with
# AddressSanitizer and UBSan and runs the whole suite (unit + integration),
# then the fuzzing step (clang: every fuzz target on its corpus and
# regression inputs, plus a few seconds of new fuzzing each).
set -e
cd "$(dirname "$0")"
scripts/deps.sh test
scripts/deps.sh fuzz
make test
exec make fuzz
