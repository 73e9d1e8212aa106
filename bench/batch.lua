-- wrk script: POST /v1/messages:batch with BENCH_BATCH (default 1,000)
-- messages per request, each to a different recipient. The body is built once
-- per wrk thread, so wrk's own cost per request is that of a static body.
--   BENCH_KEY    API key (Authorization: Bearer)
--   BENCH_BATCH  messages per request
local n = tonumber(os.getenv("BENCH_BATCH") or "1000")
local parts = {}
for i = 1, n do
	parts[i] = string.format('{"channel":"whatsapp","account":"bench-wa",'
		.. '"to":"+4479%08d","text":"Your Herald verification code is 482913. '
		.. 'It expires in 10 minutes."}', i)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "")
wrk.body = '{"messages":[' .. table.concat(parts, ",") .. ']}'
