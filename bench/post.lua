-- wrk script: POST one message to /v1/messages, the body Herald's single
-- accept endpoint takes. Also used against the nginx baseline, so both see the
-- same request bytes.
--   BENCH_KEY      API key (Authorization: Bearer)
--   BENCH_RATE     optional: total requests/s to pace to (for p99 at half load)
--   BENCH_THREADS  wrk threads (-t), needed with BENCH_RATE
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "")
-- One line: run.sh reads it from here to send the same bytes with curl.
wrk.body = '{"channel":"whatsapp","account":"bench-wa","to":"+447911123456","text":"Your Herald verification code is 482913. It expires in 10 minutes."}'

local rate = tonumber(os.getenv("BENCH_RATE") or "")
local threads = tonumber(os.getenv("BENCH_THREADS") or "")
if rate and rate > 0 and threads and threads > 0 then
	-- Open-loop pacing: each wrk thread hands out send times ("slots") spaced
	-- threads/rate apart to whichever of its connections asks next, so the
	-- request rate stays at BENCH_RATE whatever the latency (as long as the
	-- connections are enough to keep the slots filled). Wall time comes from
	-- clock_gettime through LuaJIT's FFI: Lua itself has no sub-second clock.
	local ffi = require("ffi")
	ffi.cdef [[
		typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
		int clock_gettime(int clk, bench_timespec *ts);
	]]
	local ts = ffi.new("bench_timespec")
	local function now_ms()
		ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
		return tonumber(ts.tv_sec) * 1000.0 + tonumber(ts.tv_nsec) / 1e6
	end
	local gap = 1000.0 * threads / rate
	local next_at = nil
	function delay()
		local now = now_ms()
		if next_at == nil or next_at < now then
			-- Behind schedule (all connections were busy): send now and do
			-- not burst to catch up.
			next_at = now
		end
		local slot = next_at
		next_at = next_at + gap
		return math.floor(slot - now)
	end
end
