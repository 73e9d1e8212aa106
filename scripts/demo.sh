#!/usr/bin/env bash
# Starts the provider simulator and the gateway on the demo config, then
# waits; Ctrl-C stops both.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/build-release/herald"
cfg="${HERALD_CONFIG:-$top/config/herald.yaml}"
mkdir -p "$top/.herald"
cd "$top/.herald"
"$bin" sim --config "$cfg" &
sim=$!
trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fs http://127.0.0.1:9090/sim/stats >/dev/null 2>&1 && break; sleep 0.1; done
cat <<TXT

  Herald demo: gateway on http://127.0.0.1:8080, WhatsApp simulator on http://127.0.0.1:9090
  Database: $top/.herald/herald.db      Config: $cfg

  Send a first message (in another terminal):
    export HERALD_API_KEY=hk_demo_0123456789abcdef
    $bin send --to +447911123456 --text "Hello from Herald"
    $bin send --to +447911123456 --template payment_reminder --lang en_GB \\
        --param Ana --param "£120.00" --param Friday --sync
  Watch it get delivered and read:
    $bin messages get <id>
    $bin messages list
  Or with curl:
    curl -s -H "Authorization: Bearer hk_demo_0123456789abcdef" \\
         -d '{"channel":"whatsapp","to":"+447911123456","text":"hi"}' http://127.0.0.1:8080/v1/messages
  Metrics: curl -s http://127.0.0.1:8080/metrics

TXT
"$bin" serve --config "$cfg"
