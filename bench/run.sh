#!/usr/bin/env bash
# bench/run.sh - Herald's benchmark, run by `make bench`. In one run it measures
# the raw limits of this machine (nginx answering a fixed 202, SQLite and
# PostgreSQL inserting the rows of a batch accept directly) and Herald's
# figures against them: durable accepts over HTTP (single and batch endpoint;
# SQLite with synchronous normal and full, PostgreSQL with its durable
# defaults), p99 accept latency at half the maximum load, end-to-end
# messages/s from accept to `delivered` through `herald sim` (both stores),
# webhook events applied/s, and the server's RSS. For each PostgreSQL phase it
# also reports where the time goes: CPU of Herald and of the PostgreSQL
# processes, commits and messages per commit, WAL bytes and flushes, and the
# statements that took the most server time (pg_stat_statements). It prints a
# table (figure, value, baseline, ratio, target) and a summary block to paste
# into the README.
#
# Everything runs on 127.0.0.1 on free ports, in a temp dir removed at the end;
# every process started here is stopped at the end (trap). Environment:
#   BENCH_SECONDS       seconds per measured phase (default 10)
#   BENCH_E2E_MESSAGES  messages pushed end to end (default 100000)
#   BENCH_E2E_TIMEOUT   give up waiting for `delivered` after this (default 180 s)
#   BENCH_BUILD         build dir holding herald, sqlite_baseline and
#                       pg_baseline (default build-release)
#   BENCH_KEEP=1        keep the temp dir (logs, configs) for a post-mortem
#   BENCH_PHASES        which phases to run (default all but "large": "nginx
#                       sqlite single batch e2e webhooks e2e-sent kannel
#                       pg-baseline pg-single pg-batch pg-e2e campaign";
#                       webhooks needs e2e; sqlite runs inside batch)
#   BENCH_CAMPAIGN_ROWS rows of the campaign phase's .xlsx (default 1000000)
#   BENCH_ROUNDS        alternating Herald/SQLite rounds of the batch phase (3)
#   BENCH_LARGE_MESSAGES messages in the large store (phase large, default
#                       10000000; ~12 GB of disk in the temp dir, several
#                       minutes: so not in the default phases; run it with
#                       BENCH_PHASES=large make bench)
#   BENCH_LARGE_SAMPLE  messages accepted, claimed and receipted on the empty
#                       and on the large store (default 50000)
#   BENCH_DISPATCH_THREADS=N  dispatch.threads N, with a second WhatsApp
#                       account (bench-wb, which hashes to the other loop
#                       than bench-wa with 2) and the end-to-end messages
#                       alternating between the two accounts; unset: one
#                       loop, one account (the figures in the README)
# PostgreSQL runs on a throwaway server started here (bench/pg_baseline.c
# server: Debian's server binaries, initdb into a temp dir, durable defaults).
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=${BENCH_BUILD:-$ROOT/build-release}
HERALD=$BUILD/herald
BASELINE=$BUILD/sqlite_baseline
PGBASE=$BUILD/pg_baseline
SECS=${BENCH_SECONDS:-10}
E2E_N=${BENCH_E2E_MESSAGES:-100000}
E2E_TIMEOUT=${BENCH_E2E_TIMEOUT:-180}
KANNEL_BB=${BENCH_KANNEL_BEARERBOX:-/usr/sbin/bearerbox}
KANNEL_SB=${BENCH_KANNEL_SMSBOX:-/usr/sbin/smsbox}
KANNEL_PER_REQ=100   # recipients per sendsms request (Kannel's batch: a space-separated "to")
ROUNDS=${BENCH_ROUNDS:-3}
LARGE_N=${BENCH_LARGE_MESSAGES:-10000000}   # messages in the large store
LARGE_SAMPLE=${BENCH_LARGE_SAMPLE:-50000}   # accepted, claimed and receipted on each store # alternating Herald/baseline rounds of the batch phase
CONNS=64             # wrk connections for single POSTs, nginx and webhooks
BATCH_CONNS=8        # wrk connections for the batch endpoint (8,000 messages in flight)
BATCH=1000           # messages per batch request
E2E_PAR=4            # parallel curl uploads in the end-to-end phase
KEY=hk_bench_0123456789abcdef
APP_SECRET=bench-app-secret-123
ACCOUNT=bench-wa
PHASES=" ${BENCH_PHASES:-nginx sqlite single batch e2e webhooks e2e-sent kannel pg-baseline pg-single pg-batch pg-e2e campaign} "
CAMPAIGN_ROWS=${BENCH_CAMPAIGN_ROWS:-1000000}
CMDLINE="BENCH_SECONDS=$SECS make bench"
[[ -n ${BENCH_E2E_MESSAGES:-} ]] && CMDLINE="BENCH_E2E_MESSAGES=$E2E_N $CMDLINE"
[[ -n ${BENCH_PHASES:-} ]] && CMDLINE="BENCH_PHASES='$BENCH_PHASES' $CMDLINE"

die() { echo "bench: $*" >&2; exit 1; }
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

[[ $SECS =~ ^[0-9]+$ && $SECS -ge 1 && $SECS -le 600 ]] ||
	die "BENCH_SECONDS must be a whole number of seconds in 1..600, got '$SECS'"
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 && $ROUNDS -le 20 ]] ||
	die "BENCH_ROUNDS must be a whole number in 1..20, got '$ROUNDS'"
[[ $E2E_N =~ ^[0-9]+$ && $E2E_N -ge $BATCH ]] ||
	die "BENCH_E2E_MESSAGES must be a number >= $BATCH"
for tool in wrk nginx curl openssl awk; do
	command -v "$tool" >/dev/null || die "$tool is missing (scripts/deps.sh bench installs it)"
done
[[ -x $HERALD ]] || die "$HERALD not built (make release)"
[[ -x $BASELINE ]] || die "$BASELINE not built (make -C build-release sqlite_baseline)"
if [[ $PHASES == *" kannel "* ]]; then
	[[ -x $KANNEL_BB && -x $KANNEL_SB ]] || die "$KANNEL_BB or $KANNEL_SB is missing (scripts/deps.sh bench installs kannel)"
fi
if [[ $PHASES == *" pg-"* ]]; then
	[[ -x $PGBASE ]] || die "$PGBASE not built (make -C build-release pg_baseline)"
	command -v psql >/dev/null || die "psql is missing (scripts/deps.sh bench installs postgresql)"
fi

TMP=$(mktemp -d /tmp/herald-bench.XXXXXX)
PIDS=()

# Stops one process we started (it leads its own process group, see start_bg,
# so helpers it spawned go too): TERM, then KILL if still there after 10 s.
stop_pid() {
	local pid=$1 i
	if ! kill -0 "$pid" 2>/dev/null; then
		kill -TERM -- "-$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		forget_pid "$pid"
		return 0
	fi
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "process $pid ignored SIGTERM for 10 s: killing it"
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	forget_pid "$pid"
}
forget_pid() {
	local i
	for i in "${!PIDS[@]}"; do
		[[ ${PIDS[$i]} == "$1" ]] && unset 'PIDS[i]'
	done
	return 0
}

cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts a command in the background, in a process group of its own, with its
# output in $TMP/NAME.log, and remembers it for the trap; the pid is left in
# $BG_PID.
start_bg() {
	local name=$1
	shift
	setsid "$@" >"$TMP/$name.log" 2>&1 </dev/null &
	BG_PID=$!
	PIDS+=("$BG_PID")
}

# Picks a port nobody listens on, below the ephemeral range that wrk's many
# connections use, and not handed out before in this run. Sets the named var.
USED_PORTS=" "
free_port() {
	local -n out=$1
	local busy p i
	busy=$(awk 'NR > 1 { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 \
		2>/dev/null | sort -u)
	for ((i = 0; i < 500; i++)); do
		p=$((20000 + RANDOM % 12000))
		if ! grep -qx "$(printf '%04X' "$p")" <<<"$busy" && [[ $USED_PORTS != *" $p "* ]]; then
			USED_PORTS+="$p "
			out=$p
			return 0
		fi
	done
	die "no free port found"
}

# Polls URL until it answers 200, the process PID dies, or 20 s pass.
wait_http() {
	local url=$1 pid=$2 what=$3 i code
	for ((i = 0; i < 200; i++)); do
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
		[[ $code == 200 ]] && return 0
		kill -0 "$pid" 2>/dev/null || { log "$what exited; its log:"; tail -n 20 "$TMP/$what.log" >&2; return 1; }
		sleep 0.1
	done
	log "$what did not answer $url within 20 s"
	return 1
}

fnum() { # number [decimals]; anything else (n/a) passes through
	if [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then
		awk -v x="$1" -v d="${2:-0}" 'BEGIN { printf "%.*f", d, x }'
	else
		echo "${1:-n/a}"
	fi
}
calc() { awk "BEGIN { x = $1; printf \"%.${2:-0}f\", x }"; }

# ---- wrk output ------------------------------------------------------------
# Throughput counts answered 2xx/3xx requests only: a non-2xx answer is a
# failure (run_wrk warns about it), never throughput. wrk's own Requests/sec
# counts every answer, so it is recomputed from "N requests in T s".
wrk_reqs() {
	awk '/ requests in / { n = $1 } /Non-2xx or 3xx responses:/ { bad += $NF }
	     END { print n - bad }' "$1"
}
wrk_rps() {
	awk '/ requests in / { n = $1; t = $4; sub(/,$/, "", t)
		u = t; sub(/^[0-9.]+/, "", u); t += 0
		if (u == "ms") t /= 1000; else if (u == "m") t *= 60; else if (u == "us") t /= 1e6 }
	     /Non-2xx or 3xx responses:/ { bad += $NF }
	     END { if (t > 0) printf "%.2f", (n - bad) / t }' "$1"
}
# A latency as wrk prints it (635.00us, 1.20ms, 2.00s, 1.50m) in milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
		printf "%.2f", n }'
}
wrk_pct() { to_ms "$(awk -v p="$2%" '$1 == p { print $2; exit }' "$1")"; }
# Requests that did not get a 2xx/3xx, plus socket errors of any kind.
wrk_bad() {
	awk '/Non-2xx or 3xx responses:/ { n += $NF }
	     /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
	     END { print n + 0 }' "$1"
}
run_wrk() { # out connections script url [extra wrk args]
	local out=$1 c=$2 script=$3 url=$4
	shift 4
	wrk -t2 -c"$c" -d"${SECS}s" --timeout 10s --latency -s "$script" "$@" "$url" >"$out" 2>&1 ||
		{ log "wrk failed:"; cat "$out" >&2; return 1; }
	local bad
	bad=$(wrk_bad "$out")
	if ((bad > 0)); then
		log "wrk: $bad requests failed or got a non-2xx answer"
		WARNINGS+=("$(basename "$out" .txt): $bad requests failed or got a non-2xx answer")
	fi
}

# ---- Herald ------------------------------------------------------------------
HPORT=0
SPORT=0
free_port HPORT
free_port SPORT
HURL=http://127.0.0.1:$HPORT
SURL=http://127.0.0.1:$SPORT
WARNINGS=()

# Writes a config: the account's rate limit is the only difference between
# the accept phases (1/s: the dispatcher stays out of the way) and end to end.
write_config() { # file rate_limit [driver]
	sed -e "s|@HPORT@|$HPORT|g" -e "s|@SPORT@|$SPORT|g" -e "s|@DB@|$TMP/herald.db|g" \
	    -e "s|@DRIVER@|${3:-sqlite}|g" \
	    -e "s|@KEY@|$KEY|g" -e "s|@SECRET@|$APP_SECRET|g" -e "s|@ACCOUNT@|$ACCOUNT|g" \
	    -e "s|@RATE@|$2|g" "$HERE/herald.conf" >"$1"
	[[ -n ${BENCH_DISPATCH_THREADS:-} ]] || return 0
	# The account block again as bench-wb (its own phone number id), and
	# the loops.
	awk -v n="$BENCH_DISPATCH_THREADS" '
		/^dispatch:$/ { print; print "  threads: " n; next }
		/^      - id: / { inacct = 1 }
		inacct { blk = blk $0 "\n" }
		inacct && /rate_limit:/ { inacct = 0; printf "%s", blk; b = blk
			sub(/id: [^\n]*/, "id: bench-wb", b); sub(/"106540352242922"/, "\"106540352242923\"", b)
			printf "%s", b; next }
		!inacct { print }' "$1" >"$1.tmp" && mv "$1.tmp" "$1"
}
write_config "$TMP/accept.yaml" 1
write_config "$TMP/e2e.yaml" 100000
write_config "$TMP/accept-pg.yaml" 1 postgres
write_config "$TMP/e2e-pg.yaml" 100000 postgres

# ---- PostgreSQL ------------------------------------------------------------
PG_PID=
PG_POSTMASTER=
PGCI=
start_pg() {
	start_bg pgserver "$PGBASE" server
	PG_PID=$BG_PID
	local i
	for ((i = 0; i < 600; i++)); do
		PGCI=$(sed -n 's/^conninfo=//p' "$TMP/pgserver.log")
		PG_POSTMASTER=$(sed -n 's/^pid=//p' "$TMP/pgserver.log")
		[[ -n $PGCI && -n $PG_POSTMASTER ]] && return 0
		kill -0 "$PG_PID" 2>/dev/null || break
		sleep 0.1
	done
	log "PostgreSQL did not start:"
	tail -n 30 "$TMP/pgserver.log" >&2
	return 1
}
pgq() { # sql [database] -> rows, fields separated by |
	psql "$PGCI dbname=${2:-herald}" -XAtq -v ON_ERROR_STOP=1 -c "$1"
}
# Each Herald phase on PostgreSQL gets a fresh database (as each SQLite phase
# gets a fresh file); the server's migrations make the schema.
pg_fresh_db() {
	pgq "DROP DATABASE IF EXISTS herald WITH (FORCE)" postgres >/dev/null &&
		pgq "CREATE DATABASE herald" postgres >/dev/null
}
# Clock ticks (user + system) used so far by a process, or with -PID by it
# and its children (the postmaster and its backends, which live for the
# phase: Herald's connections are opened at its start; a child that exits
# during the phase, e.g. an autovacuum worker, takes its time with it).
cpu_ticks() { # pid|-pid
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v want="$1" '{
		pid = $1; s = $0; sub(/^.*\) /, "", s); split(s, a, " ")
		if (pid == want || (want < 0 && (pid == -want || a[2] == -want))) t += a[12] + a[13]
	} END { print t + 0 }'
}
CLK_TCK=$(getconf CLK_TCK)
# Clock ticks (user + system, every thread) used so far by the given
# processes together; one that is gone counts 0.
proc_ticks() { # pid...
	local p t=0 f rest
	local -a a
	for p in "$@"; do
		f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		rest=${f##*) }
		read -r -a a <<<"$rest"
		t=$((t + a[11] + a[12]))
	done
	echo "$t"
}
# Bytes a process wrote and read through syscalls so far (/proc/PID/io wchar
# and rchar: WAL frames, checkpoint copies, sockets), as "written read".
proc_io() { # pid
	awk '$1 == "wchar:" { w = $2 } $1 == "rchar:" { r = $2 } END { print w + 0, r + 0 }' \
		"/proc/$1/io" 2>/dev/null || echo "0 0"
}
# Statistics of one PostgreSQL phase: pg_snap_begin just before the load,
# pg_snap_end LABEL MESSAGES just after it; the findings go into R[pgwhy_LABEL].
pg_snap_begin() {
	pgq "SELECT pg_stat_statements_reset()" postgres >/dev/null
	pgq "SELECT pg_stat_reset_shared('wal')" postgres >/dev/null
	PGS_X0=$(pgq "SELECT xact_commit FROM pg_stat_database WHERE datname = 'herald'" postgres)
	PGS_PG0=$(cpu_ticks "-$PG_POSTMASTER")
	PGS_H0=$(cpu_ticks "$SERVE_PID")
	PGS_T0=$EPOCHREALTIME
}
pg_snap_end() { # label messages
	local label=$1 n=$2 wall pg h x wal top busy calls
	wall=$(calc "$EPOCHREALTIME - $PGS_T0" 2)
	pg=$(calc "($(cpu_ticks "-$PG_POSTMASTER") - $PGS_PG0) / $CLK_TCK" 1)
	h=$(calc "($(cpu_ticks "$SERVE_PID") - $PGS_H0) / $CLK_TCK" 1)
	# The statistics collector's counters reach the shared views when a
	# backend reports, at most once a second: let them arrive.
	sleep 1.2
	x=$(pgq "SELECT xact_commit FROM pg_stat_database WHERE datname = 'herald'" postgres)
	x=$((x - PGS_X0))
	wal=$(pgq "SELECT wal_bytes, wal_sync, round(wal_sync_time), round(wal_write_time)
		FROM pg_stat_wal" postgres)
	local wbytes wsync wsync_ms wwrite_ms
	IFS='|' read -r wbytes wsync wsync_ms wwrite_ms <<<"$wal"
	busy=$(pgq "SELECT round(sum(total_exec_time)) FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'herald')" postgres)
	# Statements sent (each a round trip unless pipelined), utility ones
	# (SAVEPOINT, RELEASE, BEGIN, COMMIT) included.
	calls=$(pgq "SELECT sum(calls) FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'herald')" postgres)
	top=$(pgq "SELECT round(100 * total_exec_time / NULLIF(sum(total_exec_time) OVER (), 0))
		|| '% ' || calls || 'x ' || round(mean_exec_time::numeric, 3) || ' ms: '
		|| left(regexp_replace(query, '\s+', ' ', 'g'), 70)
		FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'herald')
		ORDER BY total_exec_time DESC LIMIT 4" postgres | sed 's/|/ /g' | paste -sd ';' |
		sed 's/;/; /g')
	# Every statement's figures, for a post-mortem (BENCH_KEEP=1 keeps them).
	pgq "SELECT calls, round(total_exec_time::numeric, 1), round(mean_exec_time::numeric, 3),
		rows, regexp_replace(query, '\s+', ' ', 'g')
		FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'herald')
		ORDER BY total_exec_time DESC" postgres >"$TMP/pgstat-${label// /-}.txt" || true
	R[pgcpu_us_${label// /_}]=$(calc "$pg * 1000000 / ($n > 0 ? $n : 1)" 1)
	R[pgwhy_$label]="$label on PostgreSQL, $n messages in $wall s: CPU Herald $h s, PostgreSQL $pg s\
 (2 cores = $(calc "2 * $wall" 1) s); $x commits ($(calc "$n / ($x > 0 ? $x : 1)" 1)\
 messages each); WAL $(calc "${wbytes:-0} / 1048576" 0) MiB\
 ($(calc "${wbytes:-0} / ($n > 0 ? $n : 1)" 0) bytes/message), ${wsync:-?} flushes taking\
 ${wsync_ms:-?} ms, writes ${wwrite_ms:-?} ms; ${calls:-?} statements\
 ($(calc "${calls:-0} / ($n > 0 ? $n : 1)" 1) per message) ran ${busy:-?} ms in all;\
 top: $top"
	log "    ${R[pgwhy_$label]}"
}

SERVE_PID=
SIM_PID=
start_serve() { # config normal|full|pg
	if [[ $2 == pg ]]; then
		pg_fresh_db || return 1
		start_bg serve "$HERALD" serve --config "${1%.yaml}-pg.yaml" --db "$PGCI"
	else
		local db=$TMP/herald-$2.db
		rm -f "$db" "$db-wal" "$db-shm"
		start_bg serve "$HERALD" serve --config "$1" --db "$db" --synchronous "$2"
	fi
	SERVE_PID=$BG_PID
	wait_http "$HURL/healthz" "$SERVE_PID" serve
}
stop_serve() {
	[[ -n $SERVE_PID ]] && stop_pid "$SERVE_PID"
	SERVE_PID=
	rm -f "$TMP"/herald-*.db*
}
start_sim() {
	start_bg sim "$HERALD" sim --config "$TMP/e2e.yaml" --listen "127.0.0.1:$SPORT" \
		--herald-url "$HURL"
	SIM_PID=$BG_PID
	wait_http "$SURL/sim/stats" "$SIM_PID" sim || return 1
	# Its status delays as configured, to go back to after a "sent" phase.
	SIM_DELAYS=$(curl -s --max-time 10 "$SURL/sim/config" |
		grep -o '"\(sent\|delivered\)_delay_ms": *[0-9.]*' | paste -sd, | sed 's/^/{/; s/$/}/')
	[[ $SIM_DELAYS == *sent_delay_ms*delivered_delay_ms* ]] ||
		{ log "could not read the sim's delays from GET /sim/config"; return 1; }
}

# Sets simulator knobs (POST /sim/config, a JSON object of knobs).
sim_config() { # json
	local code
	code=$(curl -s -o "$TMP/simcfg.out" -w '%{http_code}' --max-time 10 -X POST \
		-H 'Content-Type: application/json' --data-binary "$1" "$SURL/sim/config") || true
	[[ $code == 200 ]] || { log "POST /sim/config $1 answered $code: $(head -c 300 "$TMP/simcfg.out")"; return 1; }
}
metrics() { curl -s --max-time 10 -H "Authorization: Bearer $KEY" "$HURL/metrics"; }
# Sum of a metric's samples whose line contains FILTER (e.g. status="sent").
msum() { # metrics_text name [filter]
	awk -v n="$2" -v f="${3:-}" '
		$1 == n || index($1, n "{") == 1 { if (f == "" || index($0, f)) s += $NF }
		END { printf "%.0f", s }' <<<"$1"
}
rss_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# Checks that the store holds as many messages as the API acknowledged: at
# least every answered request's, at most those plus what was still in flight
# when wrk stopped (wrk counts answered requests only).
check_rows() { # label acknowledged-messages in-flight-allowance
	local m total
	m=$(metrics) || { log "$1: GET /metrics failed"; return 1; }
	total=$(msum "$m" herald_queue_depth)
	if ((total < $2 || total > $2 + $3)); then
		log "$1: the store holds $total messages but $2 were acknowledged"
		WARNINGS+=("$1: the store holds $total messages but $2 were acknowledged")
	fi
}

post() { # path body-file expected-status
	local code
	code=$(curl -s -o "$TMP/post.out" -w '%{http_code}' --max-time 30 -X POST \
		-H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
		--data-binary "@$2" "$HURL$1") || true
	if [[ $code != "$3" ]]; then
		log "POST $1 answered $code, expected $3: $(head -c 400 "$TMP/post.out")"
		return 1
	fi
}

# The single-message body, read out of bench/post.lua so the two never differ.
SINGLE_BODY=$TMP/single.json
sed -n "s/^wrk.body = '\(.*\)'\$/\1/p" "$HERE/post.lua" | tr -d '\n' >"$SINGLE_BODY"
grep -q '"to":"+447911123456"' "$SINGLE_BODY" || die "could not extract the body from post.lua"

declare -A R   # results by key
v() { echo "${R[$1]:-n/a}"; }
mib() { [[ -n ${R[$1]:-} ]] && calc "${R[$1]} / 1024" 1 || echo n/a; }

# ---- 1. nginx ------------------------------------------------------------------
phase_nginx() {
	local port=0
	free_port port
	mkdir -p "$TMP/nginx"
	sed -e "s|@DIR@|$TMP/nginx|g" -e "s|@PORT@|$port|g" "$HERE/nginx.conf" >"$TMP/nginx/nginx.conf"
	start_bg nginx nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/nginx-error.log"
	local pid=$BG_PID i code=
	for ((i = 0; i < 100; i++)); do
		code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary "@$SINGLE_BODY" \
			"http://127.0.0.1:$port/v1/messages" || true)
		[[ $code == 202 ]] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	[[ $code == 202 ]] || { log "nginx did not start:"; cat "$TMP/nginx.log" "$TMP/nginx/nginx-error.log" >&2 2>/dev/null; return 1; }
	log "nginx fixed 202: wrk -t2 -c$CONNS ${SECS}s"
	BENCH_KEY=$KEY run_wrk "$TMP/wrk-nginx.txt" "$CONNS" "$HERE/post.lua" \
		"http://127.0.0.1:$port/v1/messages" || return 1
	R[nginx]=$(wrk_rps "$TMP/wrk-nginx.txt")
	R[nginx_p99]=$(wrk_pct "$TMP/wrk-nginx.txt" 99)
	stop_pid "$pid"
	log "    nginx: ${R[nginx]} req/s, p99 ${R[nginx_p99]} ms"
}

# ---- 2. SQLite ---------------------------------------------------------------
# The raw SQLite limit of a batch accept (bench/sqlite_baseline.c: the same
# rows into the same schema, checkpoints off the inserting thread as the
# store does), PER_TX messages per transaction: the mean group Herald's
# writer committed in the batch round just before (phase_batch_rounds).
phase_sqlite() { # sync per_tx round
	local s=$1 per_tx=$2 out=$TMP/sqlite-$1-$3.txt
	"$BASELINE" --dir "$TMP" --seconds "$SECS" --per-tx "$per_tx" --per-request "$BATCH" \
		--synchronous "$s" >"$out" 2>&1 || { cat "$out" >&2; return 1; }
	R[sqlite_${s}_$3]=$(awk '/^sqlite_baseline / { sub("messages_per_s=", "", $NF); print $NF }' "$out")
	log "    SQLite ($s, $per_tx per transaction, round $3): ${R[sqlite_${s}_$3]} msg/s"
}
median() { # numbers... -> their median
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
		END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.0f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ---- 2b. PostgreSQL ------------------------------------------------------------
phase_pg_baseline() {
	log "PostgreSQL direct inserts: $BATCH messages per transaction, COPY and multi-row INSERT, ${SECS}s each"
	"$PGBASE" insert --conninfo "$PGCI" --seconds "$SECS" --per-tx "$BATCH" \
		>"$TMP/pgbase.txt" 2>&1 || { cat "$TMP/pgbase.txt" >&2; return 1; }
	R[pg_copy]=$(awk '/method=copy/ { sub("messages_per_s=", "", $NF); print $NF }' "$TMP/pgbase.txt")
	R[pg_values]=$(awk '/method=values/ { sub("messages_per_s=", "", $NF); print $NF }' "$TMP/pgbase.txt")
	R[pg_best]=$(awk '/best=/ { sub("messages_per_s=", "", $NF); print $NF }' "$TMP/pgbase.txt")
	R[pg_best_name]=$(awk '/best=/ { sub("best=", "", $2); print $2 }' "$TMP/pgbase.txt")
	log "    PostgreSQL: COPY ${R[pg_copy]} msg/s, multi-row INSERT ${R[pg_values]} msg/s"
}

# ---- 3. single accepts -----------------------------------------------------------
phase_single() { # sync
	local s=$1
	start_serve "$TMP/accept.yaml" "$s" || return 1
	post /v1/messages "$SINGLE_BODY" 202 || return 1
	log "single accepts ($s): wrk -t2 -c$CONNS ${SECS}s at full speed"
	[[ $s == pg ]] && pg_snap_begin
	local t0 t1
	t0=$(proc_ticks "$SERVE_PID")
	BENCH_KEY=$KEY run_wrk "$TMP/wrk-single-$s.txt" "$CONNS" "$HERE/post.lua" \
		"$HURL/v1/messages" || return 1
	t1=$(proc_ticks "$SERVE_PID")
	[[ $s == pg ]] && pg_snap_end single "$(wrk_reqs "$TMP/wrk-single-$s.txt")"
	R[single_$s]=$(wrk_rps "$TMP/wrk-single-$s.txt")
	R[single_p99_$s]=$(wrk_pct "$TMP/wrk-single-$s.txt" 99)
	# herald serve's CPU (every thread, user + system) per accepted request.
	R[single_cpu_$s]=$(calc "($t1 - $t0) * 1000000 / $CLK_TCK / $(wrk_reqs "$TMP/wrk-single-$s.txt")" 1)
	local half
	half=$(calc "${R[single_$s]} / 2")
	log "    ${R[single_$s]} req/s, p99 ${R[single_p99_$s]} ms, ${R[single_cpu_$s]} us of herald serve's CPU a request; now paced to $half req/s"
	BENCH_KEY=$KEY BENCH_RATE=$half BENCH_THREADS=2 run_wrk "$TMP/wrk-half-$s.txt" \
		"$CONNS" "$HERE/post.lua" "$HURL/v1/messages" || return 1
	R[half_rps_$s]=$(wrk_rps "$TMP/wrk-half-$s.txt")
	R[half_p50_$s]=$(wrk_pct "$TMP/wrk-half-$s.txt" 50)
	R[half_p99_$s]=$(wrk_pct "$TMP/wrk-half-$s.txt" 99)
	log "    at ${R[half_rps_$s]} req/s: p50 ${R[half_p50_$s]} ms, p99 ${R[half_p99_$s]} ms"
	check_rows "single $s" $(($(wrk_reqs "$TMP/wrk-single-$s.txt") + \
		$(wrk_reqs "$TMP/wrk-half-$s.txt") + 1)) $((2 * CONNS))
	stop_serve
}

# ---- 4. batch accepts ----------------------------------------------------------
# Herald's batch accepts and the raw SQLite baseline, alternating ROUNDS
# times (Herald, SQLite, Herald, SQLite, ...) so both see the same background
# load; each figure is the median of its rounds. The baseline of a round
# commits as many messages per transaction as Herald's writer did in the
# round before it: herald_messages_accepted_total / herald_store_commits_total
# over the wrk run.
phase_batch_rounds() { # sync
	local s=$1 r b=() q=() g=()
	for ((r = 1; r <= ROUNDS; r++)); do
		phase_batch "$s" "$r" || return 1
		b+=("${R[batch_${s}_$r]}")
		g+=("${R[group_${s}_$r]}")
		if want sqlite && [[ $s != pg ]]; then
			phase_sqlite "$s" "${R[group_${s}_$r]}" "$r" || return 1
			q+=("${R[sqlite_${s}_$r]}")
		fi
	done
	R[batch_$s]=$(median "${b[@]}")
	R[group_$s]=$(median "${g[@]}")
	R[batch_all_$s]=$(printf '%s ' "${b[@]}")
	if ((${#q[@]})); then
		R[sqlite_$s]=$(median "${q[@]}")
		R[sqlite_all_$s]=$(printf '%s ' "${q[@]}")
	fi
	log "    batch ($s), median of $ROUNDS: Herald ${R[batch_$s]} msg/s (${R[batch_all_$s]})," \
		"group ${R[group_$s]} messages; SQLite $(v sqlite_$s) msg/s ($(v sqlite_all_$s))"
}
phase_batch() { # sync [round]
	local s=$1 rd=${2:-1}
	start_serve "$TMP/accept.yaml" "$s" || return 1
	awk -v n="$BATCH" 'BEGIN {
		printf "{\"messages\":["
		for (i = 1; i <= n; i++)
			printf "%s{\"channel\":\"whatsapp\",\"account\":\"bench-wa\",\"to\":\"+4479%08d\",\"text\":\"Your Herald verification code is 482913. It expires in 10 minutes.\"}", (i > 1 ? "," : ""), i
		printf "]}" }' >"$TMP/batch1.json"
	post /v1/messages:batch "$TMP/batch1.json" 202 || return 1
	grep -q "\"count\":$BATCH" "$TMP/post.out" || { log "batch answer lacks count $BATCH"; return 1; }
	log "batch accepts ($s): wrk -t2 -c$BATCH_CONNS ${SECS}s, $BATCH messages per request"
	[[ $s == pg ]] && pg_snap_begin
	local m0 m1
	m0=$(metrics) || return 1
	BENCH_KEY=$KEY BENCH_BATCH=$BATCH run_wrk "$TMP/wrk-batch-$s.txt" "$BATCH_CONNS" \
		"$HERE/batch.lua" "$HURL/v1/messages:batch" || return 1
	m1=$(metrics) || return 1
	[[ $s == pg ]] && pg_snap_end batch "$(($(wrk_reqs "$TMP/wrk-batch-$s.txt") * BATCH))"
	local dm dc
	dm=$(($(msum "$m1" herald_messages_accepted_total) - $(msum "$m0" herald_messages_accepted_total)))
	dc=$(($(msum "$m1" herald_store_commits_total) - $(msum "$m0" herald_store_commits_total)))
	((dc > 0)) || { log "herald_store_commits_total did not move during the batch run"; return 1; }
	R[group_${s}_$rd]=$(((dm + dc / 2) / dc))
	R[batch_rps_$s]=$(wrk_rps "$TMP/wrk-batch-$s.txt")
	R[batch_${s}_$rd]=$(calc "${R[batch_rps_$s]} * $BATCH")
	R[batch_$s]=${R[batch_${s}_$rd]}
	R[batch_p99_$s]=$(wrk_pct "$TMP/wrk-batch-$s.txt" 99)
	log "    ${R[batch_rps_$s]} req/s = ${R[batch_$s]} msg/s, p99 ${R[batch_p99_$s]} ms;" \
		"$dm messages in $dc commits (${R[group_${s}_$rd]} per commit)"
	check_rows "batch $s" $((($(wrk_reqs "$TMP/wrk-batch-$s.txt") + 1) * BATCH)) \
		$((BATCH_CONNS * BATCH))
	stop_serve
}

# ---- 5. end to end -------------------------------------------------------------
# Two ways: "delivered" (the default) waits until every message has its two
# status receipts (sent, delivered) applied; "sent" sets the simulator's
# status webhooks a day out (POST /sim/config), so none comes during the
# phase, and waits until every message is `sent` (the provider's 200 recorded):
# accept -> sent with no receipts, the work Kannel does in its phase. The
# headline is CPU per message of `herald serve` and separately of `herald sim`
# from /proc (utime + stime, all threads) between the first post and the last
# message reaching the status.
phase_e2e() { # normal|pg [delivered|sent]
	local s=$1 until=${2:-delivered} x=
	[[ $s == pg ]] && x=_pg
	[[ $until == sent ]] && x+=_sent
	local nfiles=$((E2E_N / BATCH))
	mkdir -p "$TMP/e2e"
	[[ -e $TMP/e2e/b0000.json ]] || awk -v n="$BATCH" -v files="$nfiles" -v dir="$TMP/e2e" -v two="${BENCH_DISPATCH_THREADS:-}" 'BEGIN {
		for (f = 0; f < files; f++) {
			out = sprintf("%s/b%04d.json", dir, f)
			printf "{\"messages\":[" >out
			for (i = 1; i <= n; i++)
				printf "%s{\"channel\":\"whatsapp\",\"account\":\"%s\",\"to\":\"+4479%08d\",\"text\":\"Your Herald verification code is 482913. It expires in 10 minutes.\"}", (i > 1 ? "," : ""), (two != "" && i % 2 ? "bench-wb" : "bench-wa"), f * n + i >out
			printf "]}" >out
			close(out)
		} }'
	E2E_N=$((nfiles * BATCH))
	curl -s -X POST "$SURL/sim/reset" >/dev/null || true
	# The sim's own delays (bench/herald.conf), or a day out for "sent".
	if [[ $until == sent ]]; then
		sim_config '{"sent_delay_ms":86400000,"delivered_delay_ms":86400000}' || return 1
	else
		sim_config "$SIM_DELAYS" || return 1
	fi
	start_serve "$TMP/e2e.yaml" "$s" || return 1
	sleep 1
	R[rss_idle$x]=$(rss_kb "$SERVE_PID" VmRSS)
	log "end to end ($s): $E2E_N messages in $nfiles batch requests, $E2E_PAR at a time"
	[[ $s == pg ]] && pg_snap_begin

	local t0 t_done='' m q sd st dl rss now reached c_serve0 c_sim0
	: >"$TMP/e2e-samples.txt"
	# bench/stages.sh: a cpu-clock profile with call chains of `herald
	# serve` over exactly the measured span.
	local perf_pid=
	if [[ -n ${BENCH_PERF_OUT:-} ]]; then
		start_bg perf perf record -q -e cpu-clock -F "${BENCH_PERF_FREQ:-1999}" ${BENCH_PERF_CG:--g} \
			-p "$SERVE_PID" -o "$BENCH_PERF_OUT"
		perf_pid=$BG_PID
		sleep 0.5
		kill -0 "$perf_pid" 2>/dev/null || { log "perf record failed:"; cat "$TMP/perf.log" >&2; return 1; }
	fi
	c_serve0=$(proc_ticks "$SERVE_PID")
	c_sim0=$(proc_ticks "$SIM_PID")
	local io0
	io0=$(proc_io "$SERVE_PID")
	t0=$EPOCHREALTIME
	# The uploads: $E2E_PAR curls at a time, in their own process group.
	# shellcheck disable=SC2016 # expanded by the inner bash
	start_bg e2e-submit bash -c 'ls "$1"/e2e/b*.json | xargs -P "$2" -I{} curl -s \
		-o /dev/null -w "%{http_code}\n" --max-time 120 -H "Authorization: Bearer $3" \
		-H "Content-Type: application/json" --data-binary @{} "$4/v1/messages:batch" \
		>"$1/e2e-codes.txt"; echo "$EPOCHREALTIME" >"$1/e2e-submitted.txt"' \
		bench "$TMP" "$E2E_PAR" "$KEY" "$HURL"
	local sub_pid=$BG_PID
	# /metrics reads the kept status counts (a few rows, whatever the table
	# holds): poll it closely until 10,000 messages are
	# in flight (queued+sending+sent; the RSS there is the "10k in flight"
	# figure: later samples would also hold what the 100k peak left behind),
	# gently in the middle, closely again once the end is near.
	local gap=0.1
	while :; do
		sleep "$gap"
		m=$(metrics) || true
		now=$EPOCHREALTIME
		rss=$(rss_kb "$SERVE_PID" VmRSS)
		q=$(msum "$m" herald_queue_depth 'status="queued"')
		sd=$(msum "$m" herald_queue_depth 'status="sending"')
		st=$(msum "$m" herald_queue_depth 'status="sent"')
		dl=$(msum "$m" herald_queue_depth 'status="delivered"')
		echo "$(calc "$now - $t0" 2) $rss $q $sd $st $dl" >>"$TMP/e2e-samples.txt"
		if [[ -z ${R[rss_10k$x]:-} ]] && ((q + sd + st >= 10000)); then
			R[rss_10k$x]=$rss
			R[rss_10k_inflight$x]=$((q + sd + st))
			gap=0.5
		fi
		reached=$dl
		[[ $until == sent ]] && reached=$st
		if ((reached >= E2E_N)); then
			t_done=$now
			R[cpu_serve$x]=$(($(proc_ticks "$SERVE_PID") - c_serve0))
			local io1
			io1=$(proc_io "$SERVE_PID")
			R[io_w$x]=$(((${io1% *} - ${io0% *}) / E2E_N))
			R[io_r$x]=$(((${io1#* } - ${io0#* }) / E2E_N))
			R[cpu_sim$x]=$(($(proc_ticks "$SIM_PID") - c_sim0))
			if [[ -n $perf_pid ]]; then
				kill -INT "$perf_pid" 2>/dev/null || true
				wait "$perf_pid" 2>/dev/null || true
				forget_pid "$perf_pid"
			fi
			break
		fi
		((reached * 10 >= E2E_N * 8)) && gap=0.1
		kill -0 "$SERVE_PID" 2>/dev/null || { log "herald serve died:"; tail -n 20 "$TMP/serve.log" >&2; return 1; }
		if (($(calc "$now - $t0 > $E2E_TIMEOUT"))); then
			log "gave up after ${E2E_TIMEOUT}s: $reached of $E2E_N $until ($q queued, $sd sending, $st sent, $dl delivered)"
			break
		fi
	done
	wait "$sub_pid" || true
	forget_pid "$sub_pid"
	local ok
	ok=$(grep -c '^202$' "$TMP/e2e-codes.txt" || true)
	if ((ok != nfiles)); then
		log "only $ok of $nfiles batch requests got 202: $(sort "$TMP/e2e-codes.txt" | uniq -c | tr '\n' ' ')"
		return 1
	fi
	R[e2e_submit$x]=$(calc "$E2E_N / ($(cat "$TMP/e2e-submitted.txt") - $t0)")
	R[rss_peak$x]=$(rss_kb "$SERVE_PID" VmHWM)
	R[e2e_inflight_max$x]=$(awk '{ f = $3 + $4 + $5; if (f > m) m = f } END { print m + 0 }' "$TMP/e2e-samples.txt")
	[[ -n $t_done ]] || return 1
	[[ $s == pg ]] && pg_snap_end "end to end" "$E2E_N"
	R[e2e$x]=$(calc "$E2E_N / ($t_done - $t0)")
	R[e2e_secs$x]=$(calc "$t_done - $t0" 2)
	R[us_serve$x]=$(calc "${R[cpu_serve$x]} * 1000000 / $CLK_TCK / $E2E_N" 1)
	R[us_sim$x]=$(calc "${R[cpu_sim$x]} * 1000000 / $CLK_TCK / $E2E_N" 1)
	local stats
	stats=$(curl -s "$SURL/sim/stats" || true)
	R[sim_unique$x]=$(grep -o '"unique_messages":[0-9]*' <<<"$stats" | head -n 1 | cut -d: -f2)
	R[sim_dups$x]=$(grep -o '"duplicates":[0-9]*' <<<"$stats" | head -n 1 | cut -d: -f2)
	if [[ -n ${R[sim_dups$x]} && ${R[sim_dups$x]} != 0 ]]; then
		WARNINGS+=("end to end ($s): the sim received ${R[sim_dups$x]} duplicate sends (retried" \
			"after a send timeout; see herald_sends_total{outcome=\"retried\"})")
	fi
	log "    $E2E_N $until in ${R[e2e_secs$x]} s = ${R[e2e$x]} msg/s (accepted at ${R[e2e_submit$x]} msg/s);" \
		"sim: ${R[sim_unique$x]:-?} unique, ${R[sim_dups$x]:-?} duplicates"
	log "    CPU per message: herald serve ${R[us_serve$x]} us, herald sim ${R[us_sim$x]} us;" \
		"herald serve wrote ${R[io_w$x]:-?} and read ${R[io_r$x]:-?} bytes a message (/proc io)"
	[[ -n ${BENCH_PERF_OUT:-} ]] && echo "e2e_$until messages=$E2E_N serve_us_per_msg=${R[us_serve$x]}" \
		"sim_us_per_msg=${R[us_sim$x]} msg_per_s=${R[e2e$x]}" >"$BENCH_PERF_OUT.txt"
	log "    RSS idle $(mib rss_idle$x) MiB, at 10k in flight $(mib rss_10k$x) MiB" \
		"($(v rss_10k_inflight$x) in flight), peak $(mib rss_peak$x) MiB"
}

# ---- 5b. Kannel, a peer ---------------------------------------------------------
# Debian's Kannel (bearerbox + smsbox, bench/kannel/kannel.conf) doing what
# the e2e-sent phase has Herald do: take E2E_N messages over HTTP (smsbox's
# sendsms, KANNEL_PER_REQ recipients a request, E2E_PAR requests at a time,
# bench/kannel/sendsms.lua) and hand each to an HTTP SMSC (nginx answering
# 200 "Sent.", bench/kannel/nginx-smsc.conf) with no delivery reports and no
# store file. The figure runs from the first request until nginx has logged
# E2E_N requests; CPU per message is bearerbox's plus smsbox's from /proc.
phase_kannel() {
	local d=$TMP/kannel admin=0 box=0 smsc=0 mo=0 sendsms=0
	for v in admin box smsc mo sendsms; do free_port "$v"; done
	mkdir -p "$d"
	sed -e "s|@DIR@|$d|g" -e "s|@ADMIN_PORT@|$admin|g" -e "s|@BOX_PORT@|$box|g" \
	    -e "s|@SMSC_PORT@|$smsc|g" -e "s|@MO_PORT@|$mo|g" -e "s|@SENDSMS_PORT@|$sendsms|g" \
	    "$HERE/kannel/kannel.conf" >"$d/kannel.conf"
	sed -e "s|@DIR@|$d|g" -e "s|@PORT@|$smsc|g" "$HERE/kannel/nginx-smsc.conf" >"$d/nginx.conf"
	start_bg kannel-smsc nginx -p "$d" -c "$d/nginx.conf" -e "$d/nginx-error.log"
	local ngx=$BG_PID
	start_bg bearerbox "$KANNEL_BB" "$d/kannel.conf"
	local bb=$BG_PID
	wait_http "http://127.0.0.1:$admin/status.txt?password=bench-status" "$bb" bearerbox || return 1
	start_bg smsbox "$KANNEL_SB" "$d/kannel.conf"
	local sb=$BG_PID i st=
	# Ready when smsbox is connected and the SMSC is online.
	for ((i = 0; i < 200; i++)); do
		st=$(curl -s --max-time 2 "http://127.0.0.1:$admin/status.txt?password=bench-status" || true)
		[[ $st == *"smsbox:"* && $st == *"(online"* ]] && break
		kill -0 "$sb" 2>/dev/null || { log "smsbox exited:"; tail -n 20 "$TMP/smsbox.log" >&2; return 1; }
		sleep 0.1
	done
	[[ $st == *"smsbox:"* && $st == *"(online"* ]] || { log "Kannel not ready: $st"; return 1; }
	local code
	code=$(curl -s -o "$d/first.out" -w '%{http_code}' --max-time 10 \
		"http://127.0.0.1:$sendsms/cgi-bin/sendsms?username=bench&password=bench-pass&from=12345&to=447999999999&text=warm-up") || true
	[[ $code == 202 ]] || { log "sendsms answered $code: $(head -c 200 "$d/first.out")"; return 1; }
	for ((i = 0; i < 100; i++)); do
		(($(wc -l <"$d/smsc-access.log") >= 1)) && break
		sleep 0.1
	done
	: >"$d/smsc-access.log" # nginx appends to the same open file
	local n=$(((E2E_N / KANNEL_PER_REQ) * KANNEL_PER_REQ)) t0 t1='' c0 c1 cs0 lines=0
	log "Kannel: $n messages over sendsms, $KANNEL_PER_REQ recipients a request, $E2E_PAR at a time"
	c0=$(proc_ticks "$bb" "$sb")
	# nginx's master and its worker.
	local -a ngx_pids
	mapfile -t ngx_pids < <(echo "$ngx"; pgrep -P "$ngx" || true)
	cs0=$(proc_ticks "${ngx_pids[@]}")
	t0=$EPOCHREALTIME
	BENCH_KANNEL_MESSAGES=$n BENCH_KANNEL_PER_REQ=$KANNEL_PER_REQ BENCH_THREADS=2 \
		start_bg wrk-kannel wrk -t2 -c"$E2E_PAR" -d"${E2E_TIMEOUT}s" --timeout 30s \
		-s "$HERE/kannel/sendsms.lua" "http://127.0.0.1:$sendsms"
	local wrk_pid=$BG_PID
	while :; do
		sleep 0.1
		lines=$(wc -l <"$d/smsc-access.log")
		if ((lines >= n)); then
			t1=$EPOCHREALTIME
			c1=$(proc_ticks "$bb" "$sb")
			R[cpu_kannel_smsc]=$(($(proc_ticks "${ngx_pids[@]}") - cs0))
			break
		fi
		(($(calc "$EPOCHREALTIME - $t0 > $E2E_TIMEOUT"))) && break
		kill -0 "$bb" 2>/dev/null && kill -0 "$sb" 2>/dev/null || { log "Kannel died"; return 1; }
	done
	kill -INT "$wrk_pid" 2>/dev/null || true
	wait "$wrk_pid" 2>/dev/null || true
	forget_pid "$wrk_pid"
	local answers
	answers=$(awk '$1 == "kannel_answers" { print $2 }' "$TMP/wrk-kannel.log")
	[[ -n $t1 ]] || { log "Kannel handed $lines of $n messages to the SMSC in ${E2E_TIMEOUT}s"; return 1; }
	if [[ $answers != $((n / KANNEL_PER_REQ)) ]]; then
		log "sendsms accepted ${answers:-?} of $((n / KANNEL_PER_REQ)) requests"
		return 1
	fi
	R[kannel]=$(calc "$n / ($t1 - $t0)")
	R[kannel_secs]=$(calc "$t1 - $t0" 2)
	R[us_kannel]=$(calc "($c1 - $c0) * 1000000 / $CLK_TCK / $n" 1)
	R[us_kannel_smsc]=$(calc "${R[cpu_kannel_smsc]} * 1000000 / $CLK_TCK / $n" 1)
	R[kannel_rss]=$(($(rss_kb "$bb" VmHWM) + $(rss_kb "$sb" VmHWM)))
	sleep 0.5
	R[kannel_extra]=$(($(wc -l <"$d/smsc-access.log") - n))
	log "    $n sent to the SMSC in ${R[kannel_secs]} s = ${R[kannel]} msg/s; CPU per message" \
		"bearerbox + smsbox ${R[us_kannel]} us (the SMSC, nginx: ${R[us_kannel_smsc]} us);" \
		"peak RSS $(mib kannel_rss) MiB"
	((R[kannel_extra] == 0)) || WARNINGS+=("kannel: the SMSC got ${R[kannel_extra]} more requests than messages sent")
	stop_pid "$sb"
	stop_pid "$bb"
	stop_pid "$ngx"
}

# Writes signed WhatsApp status webhooks for the provider ids in IDS_FILE
# (one a line), 10 statuses STATUS to a body, one body a line of OUT as
# webhook.lua reads them: "sha256=<hex>", a tab, the exact body signed as Meta
# signs (HMAC-SHA256 of the body with the app secret; perl's Digest::SHA,
# the first checked against openssl).
webhook_bodies() { # ids_file status out
	local nids
	nids=$(grep -c . "$1" || true)
	((nids >= 10)) || { log "only $nids provider ids to send webhooks for"; return 1; }
	APP_SECRET=$APP_SECRET TS=$(date +%s) ST=$2 perl -MDigest::SHA=hmac_sha256_hex -ne '
		chomp; push @ids, $_;
		if (@ids == 10) { out(); @ids = () }
		sub out {
			my $st = join ",", map { "{\"id\":\"$_\",\"status\":\"$ENV{ST}\",\"timestamp\":\"$ENV{TS}\",\"recipient_id\":\"447911123456\"}" } @ids;
			my $b = "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"102290129340398\",\"changes\":[{\"field\":\"messages\",\"value\":{\"messaging_product\":\"whatsapp\",\"metadata\":{\"display_phone_number\":\"15550783881\",\"phone_number_id\":\"106540352242922\"},\"statuses\":[$st]}}]}]}";
			print "sha256=", hmac_sha256_hex($b, $ENV{APP_SECRET}), "\t", $b, "\n";
		}' "$1" >"$3" || return 1
	head -n 1 "$3" | cut -f2- | tr -d '\n' >"$TMP/webhook.json"
	local sig
	sig="sha256=$(openssl dgst -sha256 -hmac "$APP_SECRET" -r "$TMP/webhook.json" | cut -d' ' -f1)"
	[[ $sig == "$(head -n 1 "$3" | cut -f1)" ]] ||
		{ log "perl's and openssl's signatures of the first webhook differ"; return 1; }
}

# Posts every body of BODIES once (the first with curl, which must get 200,
# the rest with wrk -t2 -c$CONNS, webhook.lua) and waits until all are in the
# inbox and the inbox is back to BASE pending rows. Sets WH_T0, WH_T1 (first
# post, inbox drained), WH_RPS (ingress: 2xx answers over the script's
# first-request-to-last-answer span), WH_BEFORE and WH_AFTER (applied +
# ignored events before and after), WH_APPLIED (events that changed a message).
webhook_run() { # bodies base
	local url=$HURL/webhooks/whatsapp/$ACCOUNT m code nbodies
	nbodies=$(grep -c . "$1")
	head -n 1 "$1" | cut -f2- | tr -d '\n' >"$TMP/webhook.json"
	m=$(metrics) || return 1
	WH_BEFORE=$(($(msum "$m" herald_webhooks_total 'result="applied"') + $(msum "$m" herald_webhooks_total 'result="ignored"')))
	local applied0 rcv0 rcv pending
	applied0=$(msum "$m" herald_webhooks_total 'result="applied"')
	rcv0=$(msum "$m" herald_webhooks_total 'result="received"')
	WH_T0=$EPOCHREALTIME
	code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
		-H "X-Hub-Signature-256: $(head -n 1 "$1" | cut -f1)" --data-binary "@$TMP/webhook.json" "$url" || true)
	[[ $code == 200 ]] || { log "signed webhook answered $code, expected 200"; return 1; }
	tail -n +2 "$1" >"$TMP/webhooks-wrk.txt"
	# wrk waits for its -d even after every thread has sent its share, so
	# it runs in the background and is stopped (SIGINT: it prints its
	# summary) once every body is in the inbox and the inbox is drained.
	BENCH_WEBHOOK_BODIES=$TMP/webhooks-wrk.txt BENCH_THREADS=2 start_bg wrk-webhook \
		wrk -t2 -c"$CONNS" -d"${E2E_TIMEOUT}s" --timeout 10s --latency -s "$HERE/webhook.lua" "$url"
	local wrk_pid=$BG_PID deadline
	WH_T1=
	deadline=$(calc "${EPOCHREALTIME} + $E2E_TIMEOUT" 2)
	while :; do
		sleep 0.1
		m=$(metrics) || true
		pending=$(msum "$m" herald_webhook_inbox_pending)
		rcv=$(($(msum "$m" herald_webhooks_total 'result="received"') - rcv0))
		if ((rcv >= nbodies && pending <= $2)); then
			WH_T1=$EPOCHREALTIME
			break
		fi
		(($(calc "$EPOCHREALTIME > $deadline"))) && break
		kill -0 "$wrk_pid" 2>/dev/null || ((rcv >= nbodies)) ||
			{ log "wrk stopped after $rcv of $nbodies webhooks:"; cat "$TMP/wrk-webhook.log" >&2; return 1; }
	done
	kill -INT "$wrk_pid" 2>/dev/null || true
	wait "$wrk_pid" 2>/dev/null || true
	forget_pid "$wrk_pid"
	cp "$TMP/wrk-webhook.log" "$TMP/wrk-webhook.txt"
	[[ -n $WH_T1 ]] || { log "webhook inbox still has $pending pending (base $2) after ${E2E_TIMEOUT}s"; return 1; }
	local bad
	bad=$(wrk_bad "$TMP/wrk-webhook.txt")
	((bad == 0)) || WARNINGS+=("webhooks: $bad requests failed or got a non-2xx answer")
	local span answers
	span=$(awk '$1 == "webhook_span_ms" { print $2 }' "$TMP/wrk-webhook.txt")
	answers=$(awk '$1 == "webhook_answers" { print $2 }' "$TMP/wrk-webhook.txt")
	[[ -n $span && -n $answers ]] || { log "webhook.lua printed no span:"; cat "$TMP/wrk-webhook.txt" >&2; return 1; }
	WH_RPS=$(calc "$answers * 1000 / ($span > 0 ? $span : 1)")
	# The applier counts its events just after its commit empties the inbox:
	# read the counters until they stop moving (at most 2 s).
	local i prev
	WH_AFTER=-1
	for ((i = 0; i < 10; i++)); do
		prev=$WH_AFTER
		WH_AFTER=$(($(msum "$m" herald_webhooks_total 'result="applied"') + \
			$(msum "$m" herald_webhooks_total 'result="ignored"')))
		((WH_AFTER == prev)) && break
		sleep 0.2
		m=$(metrics) || true
	done
	WH_APPLIED=$(($(msum "$m" herald_webhooks_total 'result="applied"') - applied0))
}

# ---- 6. webhooks -------------------------------------------------------------
phase_webhooks() {
	local m i pending base
	# Let the end-to-end phase's last webhooks drain (up to 10 s). Rows that
	# stay are waiting for a provider id Herald never recorded (a send that
	# was retried after a timeout): they are the baseline the backlog must
	# return to.
	for ((i = 0; i < 100; i++)); do
		m=$(metrics) || true
		pending=$(msum "$m" herald_webhook_inbox_pending)
		((pending == 0)) && break
		sleep 0.1
	done
	base=$pending
	((base == 0)) || log "    $base webhook rows stay pending from the end-to-end phase"

	# Every delivered message's provider id, 10 to a webhook of `read`
	# statuses, each posted once: every event is a new status to apply.
	sqlite3 "$TMP/herald-normal.db" \
		"SELECT provider_id FROM message WHERE status = 3 AND provider_id IS NOT NULL" \
		>"$TMP/wh-ids.txt" || { log "cannot read provider ids from the store"; return 1; }
	webhook_bodies "$TMP/wh-ids.txt" read "$TMP/webhooks.txt" || return 1
	log "webhooks: wrk -t2 -c$CONNS, $(($(grep -c . "$TMP/webhooks.txt") - 1)) distinct bodies of 10 read statuses, each once"
	webhook_run "$TMP/webhooks.txt" "$base" || return 1
	R[wh_rps]=$WH_RPS
	R[wh_p99]=$(wrk_pct "$TMP/wrk-webhook.txt" 99)
	local after=$WH_AFTER before=$WH_BEFORE t0=$WH_T0 t1=$WH_T1
	local requests
	requests=$(awk '/requests in/ { print $1 }' "$TMP/wrk-webhook.txt")
	R[wh_events]=$((after - before))
	R[wh_new]=$WH_APPLIED
	R[wh_expected]=$(((requests + 1) * 10))
	R[wh_applied]=$(calc "${R[wh_events]} / ($t1 - $t0)")
	R[wh_drain]=$(calc "$t1 - $t0" 2)
	log "    ingress ${R[wh_rps]} req/s (p99 ${R[wh_p99]} ms); ${R[wh_events]} events" \
		"(expected ${R[wh_expected]}; ${R[wh_new]} new statuses applied) in ${R[wh_drain]} s = ${R[wh_applied]} events/s"
	# wrk counts completed requests only: up to $CONNS more may have been taken.
	if ((R[wh_events] < R[wh_expected] || R[wh_events] > R[wh_expected] + CONNS * 10)); then
		WARNINGS+=("webhooks: ${R[wh_events]} events applied or ignored, expected ${R[wh_expected]}")
	fi
}

# ---- 6b. a large store -----------------------------------------------------------
# The same three rates on an empty store and on one already holding
# LARGE_N messages with their audit trails: accepts/s (LARGE_SAMPLE
# messages as batch requests of 1,000, 4 at a time, the account held at 1/s
# so nothing is sent meanwhile), claims/s (the server restarted with the
# end-to-end config: queued -> sent, the sim's receipts set a day out; rate
# from the first sample with a sent message to the last), receipts
# applied/s (a `delivered` webhook for each of them, 10 a body, each once).
# The large store is made from the empty one's own rows after its run: its
# LARGE_SAMPLE messages and their events copied (LARGE_N / LARGE_SAMPLE - 1)
# times under new ids and provider ids by INSERT ... SELECT in the sqlite3
# shell, indexes dropped first and made again after, the kept status counts
# recounted; so every column and event is what Herald itself wrote.
large_serve() { # config db
	start_bg serve "$HERALD" serve --config "$1" --db "$2" --synchronous normal
	SERVE_PID=$BG_PID
	wait_http "$HURL/healthz" "$SERVE_PID" serve
}
large_measure() { # label db
	local x=$1 db=$2 nfiles=$((LARGE_SAMPLE / BATCH)) t0 t1 m
	mkdir -p "$TMP/large"
	[[ -e $TMP/large/b0000.json ]] || awk -v n="$BATCH" -v files="$nfiles" -v dir="$TMP/large" 'BEGIN {
		for (f = 0; f < files; f++) {
			out = sprintf("%s/b%04d.json", dir, f)
			printf "{\"messages\":[" >out
			for (i = 1; i <= n; i++)
				printf "%s{\"channel\":\"whatsapp\",\"account\":\"bench-wa\",\"to\":\"+4478%08d\",\"text\":\"Your Herald verification code is 482913. It expires in 10 minutes.\"}", (i > 1 ? "," : ""), f * n + i >out
			printf "]}" >out
			close(out)
		} }'
	# Accepts. The sample's messages are the ones with ids above the
	# store's highest now (ULIDs: time first), found later by the primary
	# key, not by a scan of the whole table.
	local maxid
	maxid=$(sqlite3 "$db" "SELECT coalesce(max(id), '') FROM message" 2>/dev/null || true)
	local t_start=$EPOCHREALTIME
	large_serve "$TMP/accept.yaml" "$db" || return 1
	R[large_start_$x]=$(calc "$EPOCHREALTIME - $t_start" 2)
	m=$(metrics) || return 1
	local a0 s0
	a0=$(msum "$m" herald_messages_accepted_total)
	t0=$EPOCHREALTIME
	printf '%s\n' "$TMP"/large/b*.json | xargs -P "$E2E_PAR" -I{} curl -s -o /dev/null -w '%{http_code}\n' \
		--max-time 120 -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
		--data-binary @{} "$HURL/v1/messages:batch" >"$TMP/large-codes.txt"
	t1=$EPOCHREALTIME
	local ok
	ok=$(grep -c '^202$' "$TMP/large-codes.txt" || true)
	((ok == nfiles)) || { log "$x: only $ok of $nfiles batch requests got 202"; return 1; }
	R[large_accept_$x]=$(calc "$LARGE_SAMPLE / ($t1 - $t0)")
	m=$(metrics) || return 1
	local acc=$(($(msum "$m" herald_messages_accepted_total) - a0))
	((acc == LARGE_SAMPLE)) || { log "$x: $acc accepted, expected $LARGE_SAMPLE"; return 1; }
	stop_pid "$SERVE_PID"
	SERVE_PID=
	# What the claims must move: the queue as the accept server left it (the
	# account's 1/s sent a few), and the sent count before the restart.
	local queued
	queued=$(sqlite3 "$db" "SELECT count(*) FROM message WHERE id > '$maxid' AND status = 0") || return 1
	s0=$(sqlite3 "$db" "SELECT coalesce(sum(n), 0) FROM message_status_count WHERE status = 2") || return 1
	# Claims: queued -> sent, no receipts.
	sim_config '{"sent_delay_ms":86400000,"delivered_delay_ms":86400000}' || return 1
	large_serve "$TMP/e2e.yaml" "$db" || return 1
	local sent=0 ta='' sa=0 now deadline
	deadline=$(calc "$EPOCHREALTIME + $E2E_TIMEOUT" 2)
	while :; do
		m=$(metrics) || true
		now=$EPOCHREALTIME
		sent=$(($(msum "$m" herald_queue_depth 'status="sent"') - s0))
		if [[ -z $ta ]] && ((sent > 0)); then
			ta=$now sa=$sent
		fi
		((sent >= queued)) && break
		(($(calc "$now > $deadline"))) && { log "$x: $sent of $queued sent after ${E2E_TIMEOUT}s"; return 1; }
		sleep 0.1
	done
	R[large_claim_$x]=$(calc "($sent - $sa) / ($now - $ta)")
	sim_config "$SIM_DELAYS" || return 1
	# Receipts: a `delivered` for each of them.
	sqlite3 "$db" "SELECT provider_id FROM message WHERE id > '$maxid' AND status = 2 AND provider_id IS NOT NULL" \
		>"$TMP/large-ids.txt" || { log "cannot read provider ids from $db"; return 1; }
	webhook_bodies "$TMP/large-ids.txt" delivered "$TMP/large-webhooks.txt" || return 1
	m=$(metrics) || return 1
	webhook_run "$TMP/large-webhooks.txt" "$(msum "$m" herald_webhook_inbox_pending)" || return 1
	R[large_receipt_$x]=$(calc "$WH_APPLIED / ($WH_T1 - $WH_T0)")
	local nsent
	nsent=$(grep -c . "$TMP/large-ids.txt")
	((WH_APPLIED == nsent / 10 * 10)) ||
		WARNINGS+=("large store ($x): $WH_APPLIED receipts applied of $((nsent / 10 * 10)) sent")
	stop_pid "$SERVE_PID"
	SERVE_PID=
	local total bytes
	total=$(sqlite3 "$db" "SELECT count(*) FROM message")
	bytes=$(($(stat -c %s "$db") + $(stat -c %s "$db-wal" 2>/dev/null || echo 0)))
	R[large_msgs_$x]=$total
	R[large_bpm_$x]=$(calc "$bytes / $total")
	R[large_bytes_$x]=$bytes
	log "    $x store: start ${R[large_start_$x]} s; accepts ${R[large_accept_$x]} msg/s," \
		"claims ${R[large_claim_$x]} msg/s, receipts applied ${R[large_receipt_$x]}/s;" \
		"$total messages, $(calc "$bytes / 1048576") MiB = ${R[large_bpm_$x]} bytes/message"
}
# Fills DB (a copy of the empty run's store) up to LARGE_N messages.
large_fill() { # db
	local db=$1 t0=$EPOCHREALTIME base reps sel mcols ecols esel idx
	sqlite3 "$db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null || return 1
	base=$(sqlite3 "$db" "SELECT count(*) FROM message")
	reps=$(((LARGE_N - base + base - 1) / base))
	# Every column as it is, but a new id (the copy's number in place of the
	# first 6 of the template id's 26 characters, which all its ids share:
	# unique, and older than any new message's) and provider id.
	mcols=$(sqlite3 "$db" "SELECT group_concat(name, ',') FROM pragma_table_info('message')")
	sel=$(tr ',' '\n' <<<"$mcols" | awk '{
		if ($1 == "id") print "printf(\x27%06d\x27, k.k) || substr(m.id, 7)"
		else if ($1 == "provider_id") print "m.provider_id || \x27.\x27 || k.k"
		else print "m." $1 }' | paste -sd,)
	ecols=$(sqlite3 "$db" "SELECT group_concat(name, ',') FROM pragma_table_info('message_event') WHERE name <> 'id'")
	esel=$(tr ',' '\n' <<<"$ecols" | awk '{
		if ($1 == "message_id") print "printf(\x27%06d\x27, k.k) || substr(e.message_id, 7)"
		else print "e." $1 }' | paste -sd,)
	idx=$(sqlite3 "$db" "SELECT sql || ';' FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL
		AND tbl_name IN ('message', 'message_event')")
	log "    filling: $base messages copied $reps times (indexes dropped and made again after)"
	sqlite3 "$db" >/dev/null <<-EOF || { log "filling $db failed"; return 1; }
		.bail on
		PRAGMA journal_mode=DELETE;
		PRAGMA synchronous=OFF;
		PRAGMA cache_size=-262144;
		$(sqlite3 "$db" "SELECT 'DROP INDEX ' || name || ';' FROM sqlite_master WHERE type = 'index'
			AND sql IS NOT NULL AND tbl_name IN ('message', 'message_event')")
		BEGIN;
		CREATE TEMP TABLE k(k INTEGER PRIMARY KEY);
		WITH RECURSIVE c(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM c WHERE k < $reps)
			INSERT INTO k SELECT k FROM c;
		CREATE TEMP TABLE m AS SELECT * FROM main.message ORDER BY id;
		CREATE TEMP TABLE e AS SELECT * FROM main.message_event ORDER BY message_id, id;
		INSERT INTO main.message($mcols) SELECT $sel FROM k, m ORDER BY k.k, m.rowid;
		INSERT INTO main.message_event($ecols) SELECT $esel FROM k, e ORDER BY k.k, e.rowid;
		COMMIT;
		$idx
		DELETE FROM message_status_count;
		INSERT INTO message_status_count(stripe, status, n) SELECT 0, status, count(*) FROM message GROUP BY status;
		PRAGMA journal_mode=WAL;
	EOF
	R[large_fill_s]=$(calc "$EPOCHREALTIME - $t0" 1)
	# The fill leaves gigabytes of dirty pages in the page cache; the
	# first checkpoint's fsync of the file would wait for all of them and
	# the kernel's writeback would compete with the measured run. Flushed
	# first, so the large store's rates are the store's, not the fill's.
	local ts=$EPOCHREALTIME
	sync "$db" || { log "sync $db failed"; return 1; }
	log "    filled in ${R[large_fill_s]} s; flushed to disk in $(calc "$EPOCHREALTIME - $ts" 1) s"
}
phase_large() {
	local db=$TMP/large-empty.db
	rm -f "$db" "$db-wal" "$db-shm"
	curl -s -X POST "$SURL/sim/reset" >/dev/null || true
	log "large store: $LARGE_SAMPLE messages accepted, claimed and receipted on an empty store"
	large_measure empty "$db" || return 1
	mv "$db" "$TMP/large.db"
	rm -f "$db-wal" "$db-shm"
	log "large store: filling to $LARGE_N messages"
	large_fill "$TMP/large.db" || return 1
	log "large store: the same on $(sqlite3 "$TMP/large.db" "SELECT count(*) FROM message") messages"
	large_measure large "$TMP/large.db" || return 1
	[[ ${BENCH_KEEP:-0} == 1 ]] || rm -f "$TMP"/large.db*
}

# ---- 7. a campaign from a spreadsheet -------------------------------------------
# A CAMPAIGN_ROWS-row .xlsx (bench/make_xlsx.c, libxlsxwriter: phone stored
# as a number, a unique name per row, a city, a date)
# uploaded, validated and queued (the account sends 1/s, so the queue holds
# them); single sends paced at 200/s meanwhile for their p99; then the
# export of the whole batch. Baseline in the same run: Debian's xlsx2csv and
# sqlite3's .import of the same file.
phase_campaign() {
	local dir=$TMP/campaign
	mkdir -p "$dir"
	log "campaign: making a $CAMPAIGN_ROWS-row .xlsx"
	"$BUILD/make_xlsx" "$dir/big.xlsx" "$CAMPAIGN_ROWS" || return 1
	local t0 t1
	t0=$EPOCHREALTIME
	xlsx2csv "$dir/big.xlsx" "$dir/conv.csv" || return 1
	sqlite3 "$dir/base.db" ".import --csv $dir/conv.csv rows" || return 1
	t1=$EPOCHREALTIME
	R[camp_base]=$(calc "$t1 - $t0" 2)
	R[camp_base_rows]=$(sqlite3 "$dir/base.db" "SELECT count(*) FROM rows")
	log "    baseline xlsx2csv + sqlite3 .import: ${R[camp_base]} s (${R[camp_base_rows]} rows)"
	rm -f "$dir/base.db" "$dir/conv.csv"

	# Twice: with the default window (batches.make_ahead, 50,000 messages
	# made ahead of the sending: "running" is when the campaign is
	# processing, every row durable and the first window made), then with
	# make_ahead 0 (every row made into a message at once: "all made").
	local mode id=""
	for mode in window all; do
		{
			cat "$TMP/accept.yaml"
			printf 'batches:\n  max_upload_bytes: 1073741824\n  upload_dir: %s\n' "$dir"
			[[ $mode == all ]] && printf '  make_ahead: 0\n'
		} >"$TMP/campaign.yaml"
		start_serve "$TMP/campaign.yaml" normal || return 1
		# Single sends at 200/s for as long as the upload and queueing take.
		BENCH_KEY=$KEY BENCH_RATE=200 BENCH_THREADS=2 start_bg wrk-camp-$mode wrk -t2 -c8 -d600s \
			--timeout 10s --latency -s "$HERE/post.lua" "$HURL/v1/messages"
		local wrk_pid=$BG_PID
		t0=$EPOCHREALTIME
		local code
		code=$(curl -s -o "$TMP/camp.json" -w '%{http_code}' --max-time 900 \
			-H "Authorization: Bearer $KEY" -F "file=@$dir/big.xlsx" -F name=bench \
			-F channel=whatsapp -F "text=Hi {{1}}" -F params=name -F start=true \
			"$HURL/v1/batches") || true
		R[camp_validated_$mode]=$(calc "$EPOCHREALTIME - $t0" 2)
		[[ $code == 201 ]] || { log "upload answered $code: $(head -c 300 "$TMP/camp.json")"; stop_pid "$wrk_pid"; return 1; }
		local valid made=0 want i
		id=$(grep -o '"id":"[^"]*"' "$TMP/camp.json" | head -n 1 | cut -d'"' -f4)
		valid=$(grep -o '"valid":[0-9]*' "$TMP/camp.json" | head -n 1 | cut -d: -f2)
		want=$valid
		[[ $mode == window ]] && ((want > 50000)) && want=50000
		for ((i = 0; i < 9000; i++)); do
			made=$(curl -s -H "Authorization: Bearer $KEY" "$HURL/v1/batches/$id" |
				grep -o '"made":[0-9]*' | cut -d: -f2)
			((made >= want)) && break
			sleep 0.1
		done
		R[camp_queued_$mode]=$(calc "$EPOCHREALTIME - $t0" 2)
		kill -INT "$wrk_pid" 2>/dev/null || true
		wait "$wrk_pid" 2>/dev/null || true
		forget_pid "$wrk_pid"
		R[camp_p99_$mode]=$(wrk_pct "$TMP/wrk-camp-$mode.log" 99)
		R[camp_rows]=$valid
		R[camp_rss_$mode]=$(rss_kb "$SERVE_PID" VmHWM)
		log "    ($mode) $valid rows validated in ${R[camp_validated_$mode]} s, $made made in" \
			"${R[camp_queued_$mode]} s; single-send p99 meanwhile ${R[camp_p99_$mode]} ms;" \
			"peak RSS $(mib camp_rss_$mode) MiB"
		[[ $mode == all ]] || stop_serve
	done
	t0=$EPOCHREALTIME
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 900 -H "Authorization: Bearer $KEY" \
		"$HURL/v1/batches/$id/export.csv") || true
	R[camp_export]=$(calc "$EPOCHREALTIME - $t0" 2)
	R[camp_export_rss]=$(rss_kb "$SERVE_PID" VmHWM)
	[[ $code == 200 ]] || log "export answered $code"
	log "    export (.csv) ${R[camp_export]} s; peak RSS after $(mib camp_export_rss) MiB"
	stop_serve
}

FAILED=()
# ---- plugins: what a trivial plugin costs on the accept and send paths -------
# The same CSV campaign (BENCH_PLUGIN_ROWS rows, default 20000) to a unit with
# no plugin, then to one bound to a trivial plugin (prepare, before_send and
# on_status that only return HERALD_OK, compiled here out of tree with
# include/herald/plugin.h), then to one bound to the example plugin
# `statements` (examples/plugins/statements: prepare shapes each row, and
# on_status records every delivery back into a PostgreSQL table through its
# data source; PostgreSQL's own CPU is not in the figure; the queue is made
# large enough that no after-commit event is dropped): Herald's CPU time
# per message for the upload and validation (accept) and for start -> every
# message delivered (send).
phase_plugins() {
	local dir=$TMP/plugins n=${BENCH_PLUGIN_ROWS:-20000} mode code id h0 h1 i pg_here=0
	mkdir -p "$dir/so"
	cat >"$dir/trivial.c" <<'EOF_PLUGIN'
#include <herald/plugin.h>
static int prep(struct herald_ctx *c, const struct herald_record *r, struct herald_draft *d)
{ (void)c; (void)r; (void)d; return HERALD_OK; }
static int before(struct herald_ctx *c, const struct herald_msg *m, struct herald_verdict *v)
{ (void)c; (void)m; (void)v; return HERALD_OK; }
static int status(struct herald_ctx *c, const struct herald_msg *m, const struct herald_event *e)
{ (void)c; (void)m; (void)e; return HERALD_OK; }
HERALD_PLUGIN(.name = "trivial", .version = "1", .prepare = prep, .before_send = before,
              .on_status = status);
EOF_PLUGIN
	cc -O2 -shared -fPIC -I "$ROOT/include" "$dir/trivial.c" -o "$dir/so/trivial.so" || return 1
	mkdir -p "$dir/so-statements"
	cc -O2 -shared -fPIC -I "$ROOT/include" "$ROOT/examples/plugins/statements/statements.c" \
		-o "$dir/so-statements/statements.so" || return 1
	awk -v n="$n" 'BEGIN { print "phone,name,month,url"
		for (i = 1; i <= n; i++)
			printf "+4479%08d,n%d,2026-11,https://files.example/s/%d.pdf\n", i, i, i }' \
		>"$dir/rows.csv"
	[[ -n $SIM_PID ]] || start_sim || return 1
	# The statements table the example plugin reads and writes back to.
	if [[ -z $PGCI ]]; then
		start_pg || return 1
		pg_here=1
	fi
	pgq "DROP DATABASE IF EXISTS statements WITH (FORCE)" postgres >/dev/null &&
		pgq "CREATE DATABASE statements" postgres >/dev/null &&
		pgq "CREATE TABLE statements (id serial PRIMARY KEY, phone text, name text,
			month text, url text, balance numeric(12,2), sent_whatsapp timestamptz,
			sent_sms timestamptz);
			INSERT INTO statements (phone, name, month, url)
			SELECT '+4479' || lpad(g::text, 8, '0'), 'n' || g, '2026-11',
			       'https://files.example/s/' || g || '.pdf' FROM generate_series(1, $n) g;
			CREATE INDEX ON statements (phone);" statements >/dev/null || return 1
	local pghost pgport pguser
	pghost=$(sed -n 's/.*host=\([^ ]*\).*/\1/p' <<<"$PGCI")
	pgport=$(sed -n 's/.*port=\([^ ]*\).*/\1/p' <<<"$PGCI")
	pguser=$(sed -n 's/.*user=\([^ ]*\).*/\1/p' <<<"$PGCI")
	for mode in none trivial statements; do
		{
			sed 's|^    name: Benchmark$|    name: Benchmark\n    units: [bu]|' "$TMP/e2e.yaml"
			[[ $mode == trivial ]] &&
				printf 'plugins:\n  dir: %s\n  queue_max: 1000000\n  units: {bench/bu: trivial}\n' "$dir/so"
			[[ $mode == statements ]] &&
				printf 'data_sources:\n  - {name: statements, driver: postgres, host: "%s", port: %s, database: statements, user: %s, pool_size: 4}\nplugins:\n  dir: %s\n  queue_max: 1000000\n  units: {bench/bu: statements}\n  config: {statements: {source: statements, link_prefix: "https://files.example/"}}\n' \
					"$pghost" "$pgport" "$pguser" "$dir/so-statements"
		} >"$dir/$mode.yaml"
		start_serve "$dir/$mode.yaml" normal || return 1
		h0=$(cpu_ticks "$SERVE_PID")
		code=$(curl -s -o "$dir/up.json" -w '%{http_code}' --max-time 600 \
			-H "Authorization: Bearer $KEY" -F "file=@$dir/rows.csv" -F "name=plug-$mode" \
			-F channel=whatsapp -F "text=Hi {{1}}, your {{2}} statement: {{3}}" \
			-F params=name,month,url -F unit=bu -F start=false \
			"$HURL/v1/batches") || true
		h1=$(cpu_ticks "$SERVE_PID")
		[[ $code == 201 ]] || { log "plugins ($mode): upload answered $code: $(head -c 300 "$dir/up.json")"; return 1; }
		R[plug_accept_$mode]=$(calc "($h1 - $h0) * 1000000 / $CLK_TCK / $n" 1)
		id=$(grep -o '"id":"[^"]*"' "$dir/up.json" | head -n 1 | cut -d'"' -f4)
		h0=$(cpu_ticks "$SERVE_PID")
		printf '{}' >"$dir/empty.json"
		post "/v1/batches/$id/start" "$dir/empty.json" 200 || return 1
		for ((i = 0; i < E2E_TIMEOUT * 10; i++)); do
			curl -s -H "Authorization: Bearer $KEY" "$HURL/v1/batches/$id" |
				grep -q '"status":"completed"' && break
			sleep 0.1
		done
		# The on_status hooks run after their commits, from the plugin
		# events' outbox: the send is done once none is pending (and, for
		# the example, every delivery is written back).
		if [[ $mode != none ]]; then
			local w
			for ((w = 0; w < E2E_TIMEOUT * 10; w++)); do
				metrics | grep -q '^herald_plugin_events_pending 0$' && break
				metrics | grep -q '^herald_plugin_events_pending' || break # before the outbox
				sleep 0.1
			done
		fi
		if [[ $mode == statements ]]; then
			local k
			for ((k = 0; k < E2E_TIMEOUT * 10; k++)); do
				(($(pgq "SELECT count(sent_whatsapp) FROM statements" statements) >= n)) && break
				sleep 0.1
			done
		fi
		h1=$(cpu_ticks "$SERVE_PID")
		((i < E2E_TIMEOUT * 10)) || { log "plugins ($mode): the campaign did not complete"; return 1; }
		R[plug_send_$mode]=$(calc "($h1 - $h0) * 1000000 / $CLK_TCK / $n" 1)
		log "    plugins ($mode): accept ${R[plug_accept_$mode]} us CPU/msg," \
			"send ${R[plug_send_$mode]} us CPU/msg ($n rows)"
		stop_serve
	done
	local done_rows
	done_rows=$(pgq "SELECT count(sent_whatsapp) FROM statements" statements)
	log "    statements: $done_rows of $n deliveries recorded back in PostgreSQL"
	R[plug_statements_recorded]=$done_rows
	((pg_here)) && { stop_pid "$PG_PID"; PGCI=; }
	R[plug_accept_delta]=$(calc "${R[plug_accept_trivial]} - ${R[plug_accept_none]}" 1)
	R[plug_send_delta]=$(calc "${R[plug_send_trivial]} - ${R[plug_send_none]}" 1)
	R[plug_accept_ex_delta]=$(calc "${R[plug_accept_statements]} - ${R[plug_accept_none]}" 1)
	R[plug_send_ex_delta]=$(calc "${R[plug_send_statements]} - ${R[plug_send_none]}" 1)
	log "    a trivial plugin costs ${R[plug_accept_delta]} us CPU/msg accepting," \
		"${R[plug_send_delta]} us CPU/msg sending; the statements example" \
		"${R[plug_accept_ex_delta]} / ${R[plug_send_ex_delta]}"
}

run_phase() { # label function args...
	local label=$1
	shift
	if ! "$@"; then
		log "phase '$label' failed (see above); going on"
		FAILED+=("$label")
		[[ -n $SERVE_PID ]] && stop_serve
	fi
	return 0
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "Herald benchmark: ${SECS}s per phase, temp dir $TMP, herald on :$HPORT, sim on :$SPORT"
# Each baseline runs just before the Herald phases compared with it, so both
# see the same background load on a shared machine.
want() { [[ $PHASES == *" $1 "* ]]; }
SIM_OK=1
if want single || want batch || want e2e || want e2e-sent || want large || want pg-single || want pg-batch || want pg-e2e; then
	start_sim || { SIM_OK=0; FAILED+=("herald sim"); }
fi
want nginx && run_phase nginx phase_nginx
if ((SIM_OK)); then
	for s in normal full; do
		want single && run_phase "single $s" phase_single "$s"
	done
fi
if ((SIM_OK)); then
	for s in normal full; do
		want batch && run_phase "batch $s" phase_batch_rounds "$s"
	done
	if want e2e; then
		run_phase "end to end" phase_e2e normal
		if ! want webhooks; then
			:
		elif [[ -n $SERVE_PID ]]; then
			run_phase webhooks phase_webhooks
		else
			FAILED+=(webhooks)
		fi
		[[ -n $SERVE_PID ]] && stop_serve
	fi
	if want e2e-sent; then
		run_phase "end to end, no receipts" phase_e2e normal sent
		[[ -n $SERVE_PID ]] && stop_serve
		sim_config "$SIM_DELAYS" || FAILED+=("sim config")
	fi
fi
want kannel && run_phase kannel phase_kannel
if want large && ((SIM_OK)); then
	run_phase "large store" phase_large
fi
if want campaign && ((SIM_OK)); then
	run_phase campaign phase_campaign
fi
# Not in the default list's text (other phases' edits): runs by default, or
# when BENCH_PHASES names it.
if [[ -z ${BENCH_PHASES:-} ]] || want plugins; then
	run_phase plugins phase_plugins
fi
# PostgreSQL: its baseline, then Herald's phases on it.
if want pg-baseline || want pg-single || want pg-batch || want pg-e2e; then
	if start_pg; then
		want pg-baseline && run_phase "PostgreSQL baseline" phase_pg_baseline
		if ((SIM_OK)); then
			want pg-single && run_phase "single pg" phase_single pg
			want pg-batch && run_phase "batch pg" phase_batch pg
			if want pg-e2e; then
				run_phase "end to end pg" phase_e2e pg
				[[ -n $SERVE_PID ]] && stop_serve
			fi
		fi
		stop_pid "$PG_PID"
	else
		FAILED+=(PostgreSQL)
	fi
fi

# ---- the table ---------------------------------------------------------------
ratio() { # value baseline -> "0.87" or "-"
	[[ -n $1 && -n $2 && $1 != n/a && $2 != n/a ]] && calc "$1 / $2" 2 || echo "-"
}
# met: yes/no for a figure with a target; "" when there is none.
met() { # value op limit
	[[ -z $1 || $1 == n/a || $1 == - ]] && { echo "n/a"; return; }
	(($(calc "$1 $2 $3"))) && echo yes || echo NO
}
ROWS=()
row() { ROWS+=("$(printf '| %s | %s | %s | %s | %s | %s |' "$@")"); }

n=$(v nginx)
row "nginx fixed 202, req/s (wrk -t2 -c$CONNS)" "$(fnum "$n")" "" "" "raw limit" ""
for s in normal full; do
	row "SQLite direct insert, msg/s, sync $s (median of $ROUNDS; $(v group_$s) per transaction = Herald's mean group)" \
		"$(fnum "$(v sqlite_$s)")" "" "" "raw limit" ""
done
for s in normal full; do
	r=$(ratio "$(v single_$s)" "$n")
	row "single durable accept, req/s, sync $s" "$(fnum "$(v single_$s)")" \
		"nginx $(fnum "$n")" "$r" ">= 0.50" "$(met "$r" '>=' 0.5)"
done
for s in normal full; do
	row "p99 accept at half load, ms, sync $s ($(fnum "$(v half_rps_$s)") req/s)" \
		"$(v half_p99_$s)" "" "" "< 5" "$(met "$(v half_p99_$s)" '<' 5)"
done
for s in normal full; do
	r=$(ratio "$(v batch_$s)" "$(v sqlite_$s)")
	row "batch durable accept, msg/s, sync $s (median of $ROUNDS, alternating with SQLite)" "$(fnum "$(v batch_$s)")" \
		"SQLite $(fnum "$(v sqlite_$s)")" "$r" ">= 0.50" "$(met "$r" '>=' 0.5)"
done
row "**CPU per message, accept -> sent, no receipts: herald serve, us**" "$(v us_serve_sent)" \
	"herald sim $(v us_sim_sent) us" "" "<= 40" "$(met "$(v us_serve_sent)" '<=' 40)"
row "**CPU per message, accept -> delivered, 2 receipts: herald serve, us**" "$(v us_serve)" \
	"herald sim $(v us_sim) us" "" "<= 80" "$(met "$(v us_serve)" '<=' 80)"
r=$(ratio "$(v e2e_sent)" "$(v kannel)")
row "end to end accept -> sent, no receipts, msg/s ($E2E_N msgs)" "$(fnum "$(v e2e_sent)")" \
	"Kannel $(fnum "$(v kannel)")" "$r" ">= 4 x Kannel" "$(met "$r" '>=' 4)"
r=$(ratio "$(v us_serve_sent)" "$(v us_kannel)")
row "CPU per message accept -> sent: Kannel (bearerbox + smsbox), us" "$(v us_kannel)" \
	"Herald $(v us_serve_sent) us" "Herald/Kannel $r" "" ""
row "end to end accept -> delivered, 2 receipts, msg/s ($E2E_N msgs)" "$(fnum "$(v e2e)")" "" "" \
	">= 15000" "$(met "$(v e2e)" '>=' 15000)"
p=$(v pg_best)
row "PostgreSQL direct COPY, msg/s (durable commit)" "$(fnum "$(v pg_copy)")" "" "" "raw limit" ""
row "PostgreSQL direct multi-row INSERT, msg/s" "$(fnum "$(v pg_values)")" "" "" "raw limit" ""
r=$(ratio "$(v single_pg)" "$n")
row "PostgreSQL: single durable accept, req/s" "$(fnum "$(v single_pg)")" "nginx $(fnum "$n")" \
	"$r" ">= 0.50" "$(met "$r" '>=' 0.5)"
row "PostgreSQL: p99 accept at half load, ms ($(fnum "$(v half_rps_pg)") req/s)" \
	"$(v half_p99_pg)" "" "" "< 5" "$(met "$(v half_p99_pg)" '<' 5)"
r=$(ratio "$(v batch_pg)" "$p")
row "PostgreSQL: batch durable accept, msg/s" "$(fnum "$(v batch_pg)")" \
	"PG $(v pg_best_name) $(fnum "$p")" "$r" ">= 0.50" "$(met "$r" '>=' 0.5)"
row "PostgreSQL: CPU per message, accept -> delivered: herald serve, us" "$(v us_serve_pg)" \
	"PostgreSQL's processes $(v pgcpu_us_end_to_end) us; herald sim $(v us_sim_pg) us" "" "<= 80" \
	"$(met "$(v us_serve_pg)" '<=' 80)"
r=$(ratio "$(v e2e_pg)" "$(v e2e)")
row "PostgreSQL: end to end accept -> delivered, msg/s" "$(fnum "$(v e2e_pg)")" \
	"SQLite $(fnum "$(v e2e)")" "$r" ">= 15000" "$(met "$(v e2e_pg)" '>=' 15000)"
r=$(ratio "$(v wh_rps)" "$n")
row "campaign .xlsx ($(v camp_rows) rows): upload + validate, s" "$(v camp_validated_window)" \
	"xlsx2csv + sqlite3 .import $(v camp_base) s" "$(ratio "$(v camp_validated_window)" "$(v camp_base)")" "< 15" \
	"$(met "$(v camp_validated_window)" '<' 15)"
row "campaign: validated + running (first 50,000 made), s; peak RSS MiB" \
	"$(v camp_queued_window) s; $(mib camp_rss_window) MiB" "" "" \
	"< 15 s; < 150 MiB" "$(met "$(v camp_queued_window)" '<' 15)"
row "campaign: single-send p99 meanwhile (200/s), ms" "$(v camp_p99_window)" "" "" "< 20" \
	"$(met "$(v camp_p99_window)" '<' 20)"
row "campaign, make_ahead 0: validated + every row made, s; peak RSS MiB" \
	"$(v camp_queued_all) s; $(mib camp_rss_all) MiB" "" "" "" ""
row "campaign, make_ahead 0: single-send p99 meanwhile (200/s), ms" "$(v camp_p99_all)" "" "" "< 20" \
	"$(met "$(v camp_p99_all)" '<' 20)"
row "campaign: export .csv of all rows, s (peak RSS MiB)" "$(v camp_export) ($(mib camp_export_rss))" "" "" "" ""
row "webhook ingress, req/s (10 statuses each)" "$(fnum "$(v wh_rps)")" "nginx $(fnum "$n")" "$r" "" ""
row "webhook events applied, events/s" "$(fnum "$(v wh_applied)")" "" "" ">= 25000" \
	"$(met "$(v wh_applied)" '>=' 25000)"
want large && for k in accept claim receipt; do
	case $k in
	accept) what="accepts/s (batch, $LARGE_SAMPLE messages)" ;;
	claim) what="claims/s (queued -> sent, no receipts)" ;;
	receipt) what="receipts applied/s (delivered, 10 per webhook)" ;;
	esac
	r=$(ratio "$(v large_${k}_large)" "$(v large_${k}_empty)")
	row "large store ($(fnum "$(v large_msgs_large)") messages): $what" "$(fnum "$(v large_${k}_large)")" \
		"empty store $(fnum "$(v large_${k}_empty)")" "$r" ">= 0.80" "$(met "$r" '>=' 0.8)"
done
want large && row "store bytes per message with its audit trail (db + WAL / messages)" \
	"$(v large_bpm_large)" "empty-store run $(v large_bpm_empty)" "" "" ""
row "server RSS idle, MiB" "$(mib rss_idle)" "" "" "< 20" "$(met "$(mib rss_idle)" '<' 20)"
row "server RSS at 10k in flight, MiB ($(v rss_10k_inflight) in flight)" "$(mib rss_10k)" "" "" \
	"< 64" "$(met "$(mib rss_10k)" '<' 64)"
row "server peak RSS (VmHWM), MiB (max $(v e2e_inflight_max) in flight)" "$(mib rss_peak)" "" "" "" ""
row "plugin: a trivial plugin's CPU per message, accept / send, us" \
	"$(v plug_accept_delta) / $(v plug_send_delta)" \
	"no plugin $(v plug_accept_none) / $(v plug_send_none)" "" "" ""
row "plugin: the statements example's CPU per message, accept / send, us (Herald only)" \
	"$(v plug_accept_ex_delta) / $(v plug_send_ex_delta)" \
	"no plugin $(v plug_accept_none) / $(v plug_send_none); $(v plug_statements_recorded) deliveries written back" "" "" ""

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo
echo "===== Herald benchmark summary (paste into the README) ====="
echo
echo "Command: \`$CMDLINE\` ($(date -u +%Y-%m-%d), $(nproc) cores: ${cpu:-unknown CPU}," \
	"wrk and the servers share them; ${SECS}s per phase; load average $LOAD_START at the" \
	"start, $(cut -d' ' -f1-3 /proc/loadavg) at the end)"
echo
echo "| figure | value | baseline | ratio | target | met |"
echo "|---|---:|---|---:|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "Also measured: single accept p99 at full load $(v single_p99_normal) ms (normal)," \
	"$(v single_p99_full) ms (full); batch request p99 $(v batch_p99_normal) ms (normal)," \
	"$(v batch_p99_full) ms (full); end-to-end run $(v e2e_secs) s, accepts of that phase" \
	"$(fnum "$(v e2e_submit)") msg/s; sim counted $(v sim_unique) unique sends," \
	"$(v sim_dups) duplicates; webhook events $(v wh_events) (expected $(v wh_expected))" \
	"drained in $(v wh_drain) s; nginx p99 $(v nginx_p99) ms. PostgreSQL: single accept" \
	"p99 at full load $(v single_p99_pg) ms, batch request p99 $(v batch_p99_pg) ms, end to" \
	"end run $(v e2e_secs_pg) s (accepts $(fnum "$(v e2e_submit_pg)") msg/s), sim counted" \
	"$(v sim_unique_pg) unique sends, $(v sim_dups_pg) duplicates; server RSS idle" \
	"$(mib rss_idle_pg) MiB, at 10k in flight $(mib rss_10k_pg) MiB, peak $(mib rss_peak_pg) MiB."
if [[ -n ${R[pgwhy_single]:-}${R[pgwhy_batch]:-}${R[pgwhy_end to end]:-} ]]; then
	echo
	echo "Where PostgreSQL's time goes (per phase; CPU from /proc, the rest from"
	echo "pg_stat_database, pg_stat_wal and pg_stat_statements, reset at the phase's start):"
	for k in single batch "end to end"; do
		[[ -n ${R[pgwhy_$k]:-} ]] && echo "- ${R[pgwhy_$k]}"
	done
fi
for w in "${WARNINGS[@]}"; do
	echo "Warning: $w"
done
echo
echo "============================================================="
if ((${#FAILED[@]})); then
	echo "bench: failed phases: ${FAILED[*]}" >&2
	exit 1
fi
