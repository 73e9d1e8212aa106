#!/bin/sh
# The README's second command: on a bare Debian 12 (apt and nothing else, as
# root or with sudo) installs what is missing, builds Herald with
# AddressSanitizer and UBSan and runs the whole suite (unit + integration).
set -e
cd "$(dirname "$0")"
scripts/deps.sh test
exec make test
