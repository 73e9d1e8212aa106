-- wrk script: push N messages into Kannel's sendsms interface (smsbox), as
-- GET /cgi-bin/sendsms with BENCH_KANNEL_PER_REQ recipients per request
-- (space-separated "to": Kannel's form of a batch, one message per
-- recipient), distinct recipient numbers throughout, the text of Herald's
-- benchmark messages. Thread k of BENCH_THREADS sends requests k, k+n, ...
-- of the BENCH_KANNEL_MESSAGES / BENCH_KANNEL_PER_REQ requests and then
-- stops (its idle connections meanwhile ask /bench-idle, which smsbox
-- answers 404 without a message); done() prints "kannel_answers <2xx answers>" (wrk itself waits for
-- -d: run.sh stops it once Kannel has handed every message to the SMSC).
local total = tonumber(os.getenv("BENCH_KANNEL_MESSAGES"))
local per = tonumber(os.getenv("BENCH_KANNEL_PER_REQ") or "100")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local nreq = math.floor(total / per)
local text = "Your+Herald+verification+code+is+482913.+It+expires+in+10+minutes."
local counter = 0
local threads = {}

function setup(thread)
	thread:set("tid", counter)
	counter = counter + 1
	threads[#threads + 1] = thread
end

local next_r, mine = nil, 0
ok = 0

function init(args)
	next_r = tid
	if tid == 0 then
		-- wrk calls the first thread's request() once before any connection
		-- opens, to check the request parses (script_verify_request): that
		-- call gets an index of its own instead of eating request 0.
		next_r = -nthreads
	end
	for r = tid, nreq - 1, nthreads do -- its share: tid, tid + n, ...
		mine = mine + 1
	end
	if mine == 0 then
		wrk.thread:stop()
	end
end

-- A connection whose thread has handed out its share waits a second before
-- asking again (the thread stops at its last answer, well before).
function delay()
	if next_r >= nreq then
		return 1000
	end
	return 0
end

function request()
	local r = next_r
	if r >= nreq then
		-- Past its share (its other connections ask while the last answers
		-- are due, after delay()): a request smsbox refuses at once, adding
		-- no message.
		return wrk.format("GET", "/bench-idle")
	end
	next_r = next_r + nthreads
	local to = {}
	for i = 0, per - 1 do
		to[#to + 1] = string.format("4479%08d", (r * per + i) % 100000000)
	end
	return wrk.format("GET", "/cgi-bin/sendsms?username=bench&password=bench-pass&from=12345&to="
		.. table.concat(to, "+") .. "&text=" .. text)
end

function response(status, headers, body)
	if status >= 200 and status < 300 then
		ok = ok + 1
	end
	if ok >= mine then
		wrk.thread:stop()
	end
end

function done(summary, latency, requests)
	local n = 0
	for _, t in ipairs(threads) do
		n = n + (t:get("ok") or 0)
	end
	io.write(string.format("kannel_answers %d\n", n))
end
