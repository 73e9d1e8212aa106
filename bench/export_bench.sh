#!/usr/bin/env bash
# The campaign export's cost: uploads an N-row campaign (default 100,000)
# to a real `herald serve` + `herald sim` (SQLite store), waits until it
# completes, then restarts the server and times each export (csv, xlsx) on
# a fresh process, reporting seconds, bytes and the server's peak RSS
# (VmHWM) after the export. Usage: bench/export_bench.sh HERALD_BIN [N]
set -euo pipefail
bin=$1
n=${2:-100000}
dir=$(mktemp -d /tmp/herald-exportbench-XXXXXX)
serve_pid=""; sim_pid=""
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api_port=$(port); sim_port=$(port)
key=hk_demo_0123456789abcdef
cat > "$dir/herald.yaml" <<YAML
server:
  listen: 127.0.0.1:$api_port
  public_url: http://127.0.0.1:$api_port
  threads: 2
  max_body_bytes: 134217728
store:
  driver: sqlite
  path: $dir/herald.db
  synchronous: normal
tenants:
  - id: acme
    name: Acme
    api_keys: [$key]
    accounts:
      - id: acme-wa
        channel: whatsapp
        base_url: http://127.0.0.1:$sim_port
        api_version: "21.0"
        phone_number_id: "106540352242922"
        access_token: test-token
        app_secret: app-secret-123
        verify_token: verify-me
        rate_limit: 5000
    templates:
      - {name: payment_reminder, channel: whatsapp, language: en_GB, body: "Hi {{1}}, pay {{2}}"}
sim:
  listen: 127.0.0.1:$sim_port
  whatsapp:
    seed: 42
    sent_delay_ms: 5
    delivered_delay_ms: 20
    read_delay_ms: 40
    webhook_retry_s: 120
YAML
start_serve() {
  "$bin" serve --config "$dir/herald.yaml" >>"$dir/serve.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$api_port/healthz" >/dev/null && return; sleep 0.1; done
  echo "serve did not start"; tail "$dir/serve.log"; exit 1
}
stop_serve() { kill "$serve_pid"; wait "$serve_pid" || true; serve_pid=""; }
"$bin" sim --config "$dir/herald.yaml" >"$dir/sim.log" 2>&1 &
sim_pid=$!
start_serve
python3 - "$n" > "$dir/upload.json" <<'PY'
import json, sys
n = int(sys.argv[1])
rows = [{"phone": "+4474%08d" % i, "name": "Ana %d" % i, "amount": "£%d.00" % (i % 97)}
        for i in range(1, n + 1)]
print(json.dumps({"name": "bench", "channel": "whatsapp",
                  "template": {"name": "payment_reminder", "language": "en_GB"},
                  "params": ["name", "amount"], "start": True, "rows": rows}))
PY
t0=$(date +%s.%N)
id=$(curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  --data-binary @"$dir/upload.json" "http://127.0.0.1:$api_port/v1/batches" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "batch $id: $n rows uploaded in $(python3 -c "print(round($(date +%s.%N)-$t0,1))") s"
for _ in $(seq 3600); do
  st=$(curl -sf -H "Authorization: Bearer $key" "http://127.0.0.1:$api_port/v1/batches/$id" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  [ "$st" = completed ] && break
  sleep 1
done
echo "batch $st after $(python3 -c "print(round($(date +%s.%N)-$t0,1))") s"
for fmt in csv xlsx; do
  stop_serve; start_serve
  base=$(awk '/VmHWM/{print $2}' /proc/$serve_pid/status)
  t1=$(date +%s.%N)
  code=$(curl -s -o "$dir/out.$fmt" -w '%{http_code}' -H "Authorization: Bearer $key" \
    "http://127.0.0.1:$api_port/v1/batches/$id/export.$fmt")
  t2=$(date +%s.%N)
  peak=$(awk '/VmHWM/{print $2}' /proc/$serve_pid/status)
  echo "export.$fmt: HTTP $code, $(stat -c %s "$dir/out.$fmt") bytes, $(python3 -c "print(round($t2-$t1,2))") s," \
       "server VmHWM ${base} kB after start -> ${peak} kB after the export"
  [ "$fmt" = xlsx ] && python3 -c "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); print('  xlsx members:', [ (i.filename, i.file_size) for i in z.infolist() if 'worksheets' in i.filename])" "$dir/out.xlsx"
  wc -l < "$dir/out.$fmt" | sed 's/^/  lines: /'
done
ls "${TMPDIR:-/tmp}" | grep -c '^herald-export-' | sed 's/^/  leftover herald-export-* temp files (all engineers): /' || true
