#!/usr/bin/env bash
# bench/stages.sh - where `herald serve`'s time goes, per stage, in µs of CPU
# per message. It runs bench/run.sh's end-to-end phase twice, accept -> sent
# with no receipts (e2e-sent) and accept -> delivered with two receipts (e2e),
# each with `perf record -e cpu-clock -g` on `herald serve` for exactly the
# measured span (BENCH_PERF_OUT; the VM has no hardware counters), and sorts
# every sample into a stage by the thread that took it (Herald names its
# threads: pthread_setname_np) and, on the HTTP and dispatcher threads, by
# its call chain:
#   accept (HTTP + parse)  libmicrohttpd's threads, except webhook requests
#   writer (SQLite)        herald-writer (every write: accepts, claims,
#                          outcomes, receipts) and herald-ckpt (checkpoints)
#   dispatcher             herald-dispatch outside libcurl
#   channel HTTP           herald-dispatch inside libcurl (and what it calls:
#                          sockets, the kernel's TCP)
#   receipts               webhook requests on the HTTP threads (a chain
#                          through api_webhook) and herald-applier
#   other                  any other thread (reaper, callbacks, main)
# A stage's µs/msg = its share of the samples x the phase's CPU per message
# measured from /proc (so the rows add up to the headline figure), and the
# top symbols (self time) of each stage are listed under the table.
#
# usage: bench/stages.sh            (BENCH_E2E_MESSAGES, default 50000;
#                                    BENCH_BUILD; BENCH_KEEP=1 keeps the
#                                    perf data in the printed directory;
#                                    BENCH_STAGES_FROM=that directory
#                                    tabulates it again without running)
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
N=${BENCH_E2E_MESSAGES:-50000}
command -v perf >/dev/null || { echo "stages: perf is missing (scripts/deps.sh bench installs linux-perf)" >&2; exit 1; }
OUT=$(mktemp -d /tmp/herald-stages.XXXXXX)
cleanup() {
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then
		echo "stages: kept $OUT" >&2
	else
		rm -rf "$OUT"
	fi
}
trap cleanup EXIT

for mode in sent delivered; do
	# BENCH_STAGES_FROM=DIR: tabulate a kept run's profiles again.
	if [[ -n ${BENCH_STAGES_FROM:-} ]]; then
		cp "$BENCH_STAGES_FROM"/perf-$mode.data* "$BENCH_STAGES_FROM"/samples-$mode.txt "$OUT/"
		continue
	fi
	phase=e2e
	[[ $mode == sent ]] && phase=e2e-sent
	echo "stages: end to end, accept -> $mode, $N messages, under perf" >&2
	BENCH_KEEP=0 BENCH_PERF_OUT=$OUT/perf-$mode.data BENCH_PHASES=$phase BENCH_E2E_MESSAGES=$N \
		"$HERE/run.sh" >"$OUT/run-$mode.log" 2>&1 ||
		{ echo "stages: bench/run.sh failed:" >&2; tail -n 30 "$OUT/run-$mode.log" >&2; exit 1; }
	[[ -s $OUT/perf-$mode.data && -s $OUT/perf-$mode.data.txt ]] ||
		{ echo "stages: no profile from the $mode run" >&2; tail -n 30 "$OUT/run-$mode.log" >&2; exit 1; }
	# One line per sample: thread, then its call chain leaf first, each
	# frame as symbol@dso.
	perf script -i "$OUT/perf-$mode.data" -F comm,ip,sym,dso 2>/dev/null | awk '
		function flush() { if (comm != "") print comm "\t" chain; comm = ""; chain = "" }
		/^[^ \t]/ { flush(); comm = $0; sub(/[ \t]+$/, "", comm); next }
		/^[ \t]+[0-9a-f]+ / {
			sym = $2; dso = $NF; gsub(/[()]/, "", dso); n = split(dso, p, "/")
			chain = chain (chain == "" ? "" : " ") sym "@" p[n]; next }
		/^$/ { flush() }
		END { flush() }' >"$OUT/samples-$mode.txt"
done

# Sorts samples into stages; prints "mode stage samples" and
# "mode stage top-symbols" lines.
classify() { # mode
	awk -F'\t' -v mode="$1" '
		{
			comm = $1; n = split($2, f, " "); leaf = f[1]; sub(/\+0x[0-9a-f]+/, "", leaf)
			if (comm ~ /^herald-writer/ || comm ~ /^herald-ckpt/) st = "writer (SQLite)"
			else if (comm ~ /^herald-applier/) st = "receipts"
			else if (comm ~ /^herald-dispatch/) {
				st = "dispatcher"
				for (i = 1; i <= n; i++)
					if (f[i] ~ /@libcurl/ || f[i] ~ /^(curl_|Curl_)/) { st = "channel HTTP"; break }
			} else if (comm ~ /MHD/ || comm ~ /^herald$/ || comm ~ /^herald-http/) {
				st = "accept (HTTP + parse)"
				for (i = 1; i <= n; i++)
					if (f[i] ~ /^(api_webhook|webhook_|wh_|ingress_)/) { st = "receipts"; break }
			} else st = "other (" comm ")"
			cnt[st]++; total++
			# A symbol, "lib(name)" for a library without symbols (Debian
			# strips them), "k:name" for the kernel.
			s = leaf; d = leaf; sub(/@.*/, "", s); sub(/^.*@/, "", d)
			if (s == "[unknown]") { sub(/\.so.*/, "", d); s = d "(?)" }
			else if (d ~ /kernel/) s = "k:" s
			sym[st SUBSEP s]++
		}
		END {
			for (k in cnt) printf "%s\t%s\t%d\n", mode, k, cnt[k]
			printf "%s\tTOTAL\t%d\n", mode, total
			for (k in sym) { split(k, a, SUBSEP); printf "SYM\t%s\t%s\t%s\t%d\n", mode, a[1], a[2], sym[k] }
		}' "$OUT/samples-$1.txt"
}
{ classify sent; classify delivered; } >"$OUT/stages.txt"

us_of() { awk -v k="$2" '{ for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) { sub(k "=", "", $i); print $i } }' "$OUT/perf-$1.data.txt"; }
US_SENT=$(us_of sent serve_us_per_msg)
US_DEL=$(us_of delivered serve_us_per_msg)

echo
echo "===== where the time goes: herald serve, µs of CPU per message ($N messages; $(date -u +%Y-%m-%d), load average $(cut -d' ' -f1-3 /proc/loadavg)) ====="
echo
echo "| stage | accept → sent, no receipts | accept → delivered, 2 receipts | top symbols (self, accept → delivered) |"
echo "|---|---:|---:|---|"
for st in "accept (HTTP + parse)" "writer (SQLite)" "dispatcher" "channel HTTP" "receipts" "other"; do
	row=$(awk -F'\t' -v st="$st" -v us_s="$US_SENT" -v us_d="$US_DEL" '
		$1 == "SYM" { next }
		$3 != "" && $2 == "TOTAL" { tot[$1] = $3; next }
		(st == "other" ? index($2, "other") == 1 : $2 == st) { c[$1] += $3 }
		END {
			s = tot["sent"] ? us_s * c["sent"] / tot["sent"] : 0
			d = tot["delivered"] ? us_d * c["delivered"] / tot["delivered"] : 0
			printf "%.1f\t%.1f", s, d }' "$OUT/stages.txt")
	top=$(awk -F'\t' -v st="$st" '$1 == "SYM" && $2 == "delivered" &&
		(st == "other" ? index($3, "other") == 1 : $3 == st) { print $5 "\t" $4 }' "$OUT/stages.txt" |
		sort -rn | awk -F'\t' 'NR <= 4 { printf "%s%s", (NR > 1 ? ", " : ""), $2 }')
	printf '| %s | %s | %s | %s |\n' "$st" "${row%%$'\t'*}" "${row##*$'\t'}" "${top:-}"
done
printf '| **herald serve, total** (from /proc) | **%s** | **%s** | |\n' "$US_SENT" "$US_DEL"
echo
echo "herald sim: $(us_of sent sim_us_per_msg) µs/msg (no receipts), $(us_of delivered sim_us_per_msg) µs/msg (two receipts);" \
	"rates in these runs: $(us_of sent msg_per_s) and $(us_of delivered msg_per_s) msg/s (perf itself costs some)."
