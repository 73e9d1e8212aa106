-- wrk script: POST one signed WhatsApp status webhook, over and over, to
-- /webhooks/whatsapp/<account>. run.sh writes the body and its signature.
--   BENCH_WEBHOOK_BODY  file holding the exact body bytes that were signed
--   BENCH_WEBHOOK_SIG   "sha256=<hex>" (X-Hub-Signature-256)
local f = assert(io.open(os.getenv("BENCH_WEBHOOK_BODY"), "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Hub-Signature-256"] = os.getenv("BENCH_WEBHOOK_SIG")
wrk.body = body
