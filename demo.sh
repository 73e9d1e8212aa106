#!/bin/sh
# The README's first command: on a bare Debian 12 (apt and nothing else, as
# root or with sudo) installs what is missing, builds Herald and starts the
# provider simulator and the gateway on the demo config. Ctrl-C stops both.
set -e
cd "$(dirname "$0")"
scripts/deps.sh build
exec make demo
