#!/usr/bin/env bash
# Starts the provider simulator and the gateway on the demo config, then
# waits; Ctrl-C stops both.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/build-release/herald"
cfg="${HERALD_CONFIG:-$top/config/herald.yaml}"
# The addresses come from the config (server.listen, sim.listen), so a copy
# of it on other ports (HERALD_CONFIG) works the same.
listen_of() { # listen_of SECTION: the "  listen:" value under a top-level key
  awk -v sec="$1" '/^[^ #][^:]*:/ { cur = $1; sub(/:.*/, "", cur) }
    cur == sec && /^  listen:/ { v = $2; gsub(/["\047]/, "", v); print v; exit }' "$cfg"
}
gw=$(listen_of server); gw=${gw:-127.0.0.1:8080}
# server.metrics_listen: the unauthenticated scrape address, if any.
metrics_at=$(awk '/^[^ #][^:]*:/ { cur = $1; sub(/:.*/, "", cur) }
  cur == "server" && /^  metrics_listen:/ { v = $2; gsub(/["\047]/, "", v); print v; exit }' "$cfg")
sim_at=$(listen_of sim); sim_at=${sim_at:-127.0.0.1:9090}
cfg=$(cd "$(dirname "$cfg")" && pwd)/$(basename "$cfg")
mkdir -p "$top/.herald"
cd "$top/.herald"
# The RCS demo account signs its token requests with a service-account key;
# make one for the simulator to check (production uses Google's JSON file).
# Made again when the simulator moved (a config on other ports).
if ! grep -qF "\"token_uri\":\"http://$sim_at/token\"" rbm-service-account.json 2>/dev/null; then
  key=$(openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null |
        awk '{printf "%s\\n", $0}')
  printf '{"type":"service_account","project_id":"herald-demo","private_key_id":"demo",'\
'"private_key":"%s","client_email":"demo@herald-demo.iam.gserviceaccount.com",'\
'"token_uri":"http://%s/token"}\n' "$key" "$sim_at" > rbm-service-account.json
  chmod 600 rbm-service-account.json
fi
"$bin" sim --config "$cfg" &
sim=$!
trap 'kill $sim 2>/dev/null || true; wait $sim 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fs "http://$sim_at/sim/stats" >/dev/null 2>&1 && break; sleep 0.1; done
cat <<TXT

  Herald demo: gateway on http://$gw, provider simulator on http://$sim_at
  Database: $top/.herald/herald.db      Config: $cfg

  Send a first message (in another terminal):
    export HERALD_API_KEY=hk_demo_0123456789abcdef HERALD_URL=http://$gw
    $bin send --to +447911123456 --text "Hello from Herald"
    $bin send --to +447911123456 --template payment_reminder --lang en_GB \\
        --param Ana --param "£120.00" --param Friday --sync
    $bin send --channel sms --to +447911123456 --text "Your code is 1234"
    $bin send --channel rcs --to +447911123456 --text "Pay now?" --button yes:Yes --button no:No
    $bin send --channel telegram --to 123456789 --text "Hello <b>there</b>" --option parse_mode=HTML
  Watch it get delivered and read:
    $bin messages get <id>
    $bin messages list
  Or with curl:
    curl -s -H "Authorization: Bearer hk_demo_0123456789abcdef" \\
         -d '{"channel":"whatsapp","to":"+447911123456","text":"hi"}' http://$gw/v1/messages
  Metrics (needs the metrics:read scope; the demo key has every scope):
    curl -s -H "Authorization: Bearer hk_demo_0123456789abcdef" http://$gw/metrics
${metrics_at:+  Or as Prometheus scrapes them (server.metrics_listen, no key):
    curl -s http://$metrics_at/metrics
}
TXT
"$bin" serve --config "$cfg"
