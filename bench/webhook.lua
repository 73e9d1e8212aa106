-- wrk script: POST signed WhatsApp status webhooks to
-- /webhooks/whatsapp/<account>, each body once, so every status is a new one
-- for Herald to apply (not the cheap duplicate path). run.sh writes the
-- bodies, one a line: "sha256=<hex>" (X-Hub-Signature-256), a tab, the exact
-- body bytes that were signed.
--   BENCH_WEBHOOK_BODIES  that file
--   BENCH_THREADS         wrk threads (-t): thread k of n sends lines k, k+n, ...
-- A thread that has sent its share stops, but wrk's main thread still waits
-- for -d, so its Requests/sec is meaningless here: done() prints
-- "webhook_span_ms <ms>", first request to last answer over all threads, and
-- "webhook_answers <n>", answers with a 2xx. The last requests of a thread may
-- repeat its last body (at most one per connection): those statuses come back
-- as ignored duplicates.
local ffi = require("ffi")
ffi.cdef [[
	typedef struct { long tv_sec; long tv_nsec; } wh_timespec;
	int clock_gettime(int clk, wh_timespec *ts);
]]
local ts = ffi.new("wh_timespec")
local function now_ms()
	ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC: the same clock in every thread
	return tonumber(ts.tv_sec) * 1000.0 + tonumber(ts.tv_nsec) / 1e6
end
local lines = {}
for line in io.lines(os.getenv("BENCH_WEBHOOK_BODIES")) do
	local tab = line:find("\t", 1, true)
	lines[#lines + 1] = {line:sub(1, tab - 1), line:sub(tab + 1)}
end
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local counter = 0
local threads = {}

function setup(thread)
	thread:set("tid", counter)
	counter = counter + 1
	threads[#threads + 1] = thread
end

local next_i = nil
local sent, mine = 0, 0
first_ms, last_ms, ok = nil, 0, 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
	next_i = tid + 1
	if tid == 0 then
		-- wrk calls the first thread's request() once before any connection
		-- opens, to check the request parses (script_verify_request): that
		-- call gets an index of its own instead of eating body 1.
		next_i = 1 - nthreads
	end
	mine = 0
	for i = tid + 1, #lines, nthreads do
		mine = mine + 1
	end
end

function request()
	if not first_ms then
		first_ms = now_ms()
	end
	local i = next_i
	if i > #lines then
		i = i - nthreads
	else
		next_i = next_i + nthreads
	end
	if i < 1 then
		i = 1 -- the verification call
	end
	local l = lines[i]
	return wrk.format(nil, nil, {["X-Hub-Signature-256"] = l[1]}, l[2])
end

function response(status, headers, body)
	sent = sent + 1
	last_ms = now_ms()
	if status >= 200 and status < 300 then
		ok = ok + 1
	end
	if sent >= mine then
		wrk.thread:stop()
	end
end

function done(summary, latency, requests)
	local lo, hi, n = nil, 0, 0
	for _, t in ipairs(threads) do
		local f = t:get("first_ms")
		if f and (not lo or f < lo) then
			lo = f
		end
		local l = t:get("last_ms") or 0
		if l > hi then
			hi = l
		end
		n = n + (t:get("ok") or 0)
	end
	io.write(string.format("webhook_span_ms %.1f\nwebhook_answers %d\n", hi - (lo or hi), n))
end
