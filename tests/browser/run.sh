#!/bin/sh
# The dashboard's browser tests (tests/browser/dashboard.mjs), as CTest's
# browser/dashboard: installs playwright-core and axe-core with npm into
# BROWSER_DEPS once (test time only: the build never needs npm), then drives
# Debian's chromium. Prints "N passed, N failed" last.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
: "${BROWSER_DEPS:=$here/../../build/browser-deps}"
export BROWSER_DEPS
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "node and npm are needed (scripts/deps.sh test installs them)"; echo "0 passed, 1 failed"; exit 1
fi
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
	echo "$chromium is missing (scripts/deps.sh test installs chromium)"; echo "0 passed, 1 failed"; exit 1
fi
# Pinned: playwright-core 1.60 is the last that runs on Debian 12's
# Node.js 18 (later ones need 20); it drives any recent Chromium over CDP.
PW=1.60.0
AXE=4.14.1
have() { grep -q "\"version\": \"$2\"" "$BROWSER_DEPS/node_modules/$1/package.json" 2>/dev/null; }
if ! have playwright-core "$PW" || ! have axe-core "$AXE"; then
	mkdir -p "$BROWSER_DEPS"
	[ -f "$BROWSER_DEPS/package.json" ] || echo '{"private":true}' > "$BROWSER_DEPS/package.json"
	npm install --prefix "$BROWSER_DEPS" --no-audit --no-fund --loglevel=error \
		"playwright-core@$PW" "axe-core@$AXE"
fi
exec node "$here/dashboard.mjs"
