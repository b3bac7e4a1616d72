#!/usr/bin/env bash
# benches/soak/run.sh — 1 M requests at 256 connections, 10 % of them raising in the app.
#
# What it checks: ferrocorn `--workers 2 --threads 4` serving benches/soak/app.py answers every
# request, with no errors other than the 500s the app asks for, and its RSS stays flat once warm
# (target: growth under 10 MiB from the warm-up point to the end).
#
# How:
# - Builds ferrocorn from a snapshot of one commit (`git archive`, default HEAD) into its own venv
#   with its own cargo target dir, so uncommitted edits in the checkout are not what gets measured
#   and no build dir is shared with anyone else. A release build takes a few minutes the first
#   time; later runs reuse the target dir.
# - Starts the server (pinned to CPU 0 when there are 2+ cores, like peerbench's pinned mode) on
#   port 0 and reads the port from its `Listening at:` line.
# - wrk (pinned to CPU 1, with this script) runs benches/soak/soak.lua: every 10th request goes
#   to /raise, responses are counted by status. wrk only knows durations, so the Lua stops its
#   thread after SOAK_TOTAL responses and this script, which watches the count the Lua writes to a
#   file, then sends wrk SIGINT to end the run at once. (Lua can't do that itself: os.execute
#   goes through system(), which ignores SIGINT in the caller while the child runs.) wrk's -d is
#   only a backstop. Requests still in flight when wrk stops are dropped; the app's /count shows
#   how many the server really handled.
# - The same loop samples the server's VmRSS every 0.2 s beside the response count, so "RSS after
#   warm-up" is the first sample taken once SOAK_WARMUP responses had arrived.
# - Prints totals, statuses, socket errors, RSS at warm-up / end / peak and the growth, and exits
#   1 if there was any error other than the 500s (socket errors, other statuses, fewer responses,
#   a server log line that is not INFO or a /raise traceback, GET / failing after the load), or if
#   RSS grew by SOAK_MAX_GROWTH_MIB or more.
#
# Usage: benches/soak/run.sh [OUT_DIR]          (default: /tmp/ferrocorn-soak-UTCSTAMP)
# Environment (defaults): SOAK_REF (HEAD), SOAK_TOTAL (1000000), SOAK_CONNS (256),
#   SOAK_WARMUP (100000), SOAK_MAX_GROWTH_MIB (10), SOAK_VENV (/tmp/ferrocorn-soak-venv),
#   SOAK_TARGET_DIR (/tmp/target-soak: the cargo target dir), SOAK_PIN (1; 0 = let both use every core),
#   SOAK_BACKSTOP_S (900: wrk's -d), SOAK_SKIP_INSTALL (0; 1 = use what the venv has).
# Needs: python3 (3.9+), a Rust toolchain, git, wrk, curl, taskset. Takes about a minute after
# the build on a 2-vCPU machine. The server's log (one traceback per /raise) is written to
# OUT_DIR/server.log and is large: about 25 MB per 100,000 raises.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

ref="${SOAK_REF:-HEAD}"
total="${SOAK_TOTAL:-1000000}"
conns="${SOAK_CONNS:-256}"
warmup="${SOAK_WARMUP:-100000}"
max_growth_mib="${SOAK_MAX_GROWTH_MIB:-10}"
venv="${SOAK_VENV:-/tmp/ferrocorn-soak-venv}"
# Not the caller's CARGO_TARGET_DIR: that may be a build dir someone else is using.
export CARGO_TARGET_DIR="${SOAK_TARGET_DIR:-/tmp/target-soak}"
pin="${SOAK_PIN:-1}"
backstop_s="${SOAK_BACKSTOP_S:-900}"
out="${1:-/tmp/ferrocorn-soak-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

server_pid=""
wrk_pid=""
cleanup() {
    # Only the two processes this script started.
    if [[ -n "$wrk_pid" ]] && kill -0 "$wrk_pid" 2>/dev/null; then kill "$wrk_pid" || true; fi
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# --- build ---------------------------------------------------------------------------------
commit="$(git -C "$repo" rev-parse "$ref")"
if [[ "${SOAK_SKIP_INSTALL:-0}" != 1 ]]; then
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    # Inside the venv so the rm can only ever remove a folder this script made.
    src="$venv/ferrocorn-src"
    rm -rf "$src"
    mkdir -p "$src"
    git -C "$repo" archive "$commit" | tar -x -C "$src"
    echo "==> pip install ferrocorn @ ${commit:0:7} into $venv (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    # The version never changes between commits, so without --force-reinstall pip may keep the old build.
    "$venv/bin/pip" install --quiet --force-reinstall --no-deps "$src"
    echo "$commit" >"$venv/ferrocorn-commit"
fi
installed="$(cat "$venv/ferrocorn-commit" 2>/dev/null || echo unknown)"

# --- pinning -------------------------------------------------------------------------------
cores="$(nproc)" # before pinning: nproc counts only the CPUs this process may use
server_prefix=()
if [[ "$pin" == 1 && "$cores" -ge 2 ]]; then
    # After the build, so the build still gets every core. wrk and this loop inherit CPU 1.
    taskset -cp 1 "$$" >/dev/null
    server_prefix=(taskset -c 0)
    pinning="server on CPU 0; wrk and this script on CPU 1"
else
    pinning="none"
fi

# --- server --------------------------------------------------------------------------------
server_cmd=("$venv/bin/ferrocorn" --workers 2 --threads 4 --bind 127.0.0.1:0 --chdir "$here" app:app)
"${server_prefix[@]}" "${server_cmd[@]}" >"$out/server.out" 2>"$out/server.log" &
server_pid=$!

port=""
for _ in $(seq 300); do
    line="$(grep -m1 -o 'Listening at: http://127\.0\.0\.1:[0-9]* ([0-9]*)' "$out/server.log" || true)"
    if [[ -n "$line" ]]; then
        port="$(sed -E 's/.*:([0-9]+) \(.*/\1/' <<<"$line")"
        logged_pid="$(sed -E 's/.*\(([0-9]+)\)/\1/' <<<"$line")"
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "ferrocorn exited before listening:" >&2
        cat "$out/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z "$port" ]]; then
    echo "no 'Listening at:' line after 30 s; see $out/server.log" >&2
    exit 1
fi
if [[ "$logged_pid" != "$server_pid" ]]; then
    # taskset and the console script both exec, so these should be one process.
    echo "warning: server logged pid $logged_pid, started $server_pid; sampling $logged_pid" >&2
fi
rss_pid="$logged_pid"
base="http://127.0.0.1:$port"

rss_kib() {
    local key val _
    while read -r key val _; do
        if [[ "$key" == VmRSS: ]]; then
            echo "$val"
            return 0
        fi
    done <"/proc/$rss_pid/status"
    return 1
}

count_before="$(curl -sS --max-time 5 "$base/count")"
rss_start="$(rss_kib)"

# --- load ----------------------------------------------------------------------------------
progress="$out/progress"
echo 0 >"$progress"
wrk_cmd=(wrk -t1 -c"$conns" -d"${backstop_s}s" --timeout 5s --latency -s "$here/soak.lua" "$base/")
echo "==> ${wrk_cmd[*]}  (SOAK_TOTAL=$total)"
started_at="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
SOAK_TOTAL="$total" SOAK_PROGRESS_FILE="$progress" "${wrk_cmd[@]}" >"$out/wrk.txt" 2>&1 &
wrk_pid=$!

now_us() { echo "${EPOCHREALTIME//[.,]/}"; }
sample() { # one row of rss.tsv: seconds since the load began, responses so far, VmRSS
    local ms=$((($(now_us) - t0) / 1000))
    printf '%d.%03d\t%s\t%s\n' $((ms / 1000)) $((ms % 1000)) "$got" "$1" >>"$out/rss.tsv"
}
printf 't_s\tresponses\trss_kib\n' >"$out/rss.tsv"
t0="$(now_us)"
got=0
server_died=0
while kill -0 "$wrk_pid" 2>/dev/null; do
    # The Lua truncates and rewrites the file, so a read can catch it empty: keep the last value.
    read -r n <"$progress" || n=""
    [[ "$n" =~ ^[0-9]+$ ]] && got="$n"
    if ! rss="$(rss_kib 2>/dev/null)"; then
        server_died=1
        break
    fi
    sample "$rss"
    if ((got >= total)); then
        kill -INT "$wrk_pid" 2>/dev/null || true
    fi
    sleep 0.2
done
wrk_rc=0
wait "$wrk_pid" || wrk_rc=$?
wrk_pid=""
if ((server_died)); then
    echo "the server died during the run; see $out/server.log" >&2
    tail -50 "$out/server.log" >&2
    exit 1
fi
rss_end="$(rss_kib)"
sample "$rss_end"

# --- after ---------------------------------------------------------------------------------
count_after="$(curl -sS --max-time 5 "$base/count")"
after_status="$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$base/")"
sleep 5
rss_idle="$(rss_kib)"
kill -TERM "$server_pid"
server_rc=0
wait "$server_pid" || server_rc=$?
server_pid=""

# --- report --------------------------------------------------------------------------------
w() { sed -n "s/^$1=//p" "$out/wrk.txt"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

rss_at() { # first sample at or after N responses: "t_s responses rss_kib"
    awk -F'\t' -v n="$1" 'NR > 1 && $2 >= n { print $1, $2, $3; exit }' "$out/rss.tsv"
}
read -r warm_t warm_n rss_warm <<<"$(rss_at "$warmup")"
rss_peak="$(awk -F'\t' 'NR > 1 && $3 > m { m = $3 } END { print m }' "$out/rss.tsv")"
growth=$((rss_end - rss_warm))
socket_errors=$(($(w wrk_err_connect) + $(w wrk_err_read) + $(w wrk_err_write) + $(w wrk_err_timeout)))
log_raises="$(grep -c '\[ERROR\] Error handling request /raise$' "$out/server.log" || true)"
# Every line that is neither a traceback line, a /raise report nor INFO.
log_other="$(grep -Ev '^(Traceback |  |app\.SoakError: )|\[ERROR\] Error handling request /raise$|\[INFO\] ' "$out/server.log" || true)"

{
    echo "ferrocorn soak — $started_at"
    echo "build:        $("$venv/bin/ferrocorn" --version 2>&1 | tail -1) @ ${installed:0:7}; $("$venv/bin/python" --version); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $cores CPUs; load average before: $load_before"
    echo "server:       ${server_prefix[*]} ${server_cmd[*]}"
    echo "load:         ${wrk_cmd[*]}  (SOAK_TOTAL=$total; every 10th request to /raise)"
    echo "pinning:      $pinning"
    echo "duration:     $(awk -v u="$(w wrk_duration_us)" 'BEGIN { printf "%.1f s", u / 1e6 }') (wrk's run time, incl. <= 0.2 s from the quota to SIGINT); $(awk -v n="$total" -v u="$(w wrk_duration_us)" 'BEGIN { printf "%.0f", n / (u / 1e6) }') req/s"
    echo "responses:    $(w soak_responses) counted (200: $(w soak_200), 500: $(w soak_500), other: $(w soak_other) $(w soak_other_statuses)); $(w soak_late) more arrived after the quota"
    echo "sent by wrk:  $(w soak_sent) ($(w soak_raise_sent) to /raise); wrk exit status $wrk_rc"
    echo "socket errs:  connect $(w wrk_err_connect), read $(w wrk_err_read), write $(w wrk_err_write), timeout $(w wrk_err_timeout)"
    echo "server saw:   before: $count_before; after: $count_after"
    echo "latency:      p50 $(w wrk_lat_p50_us) us, p99 $(w wrk_lat_p99_us) us, p99.9 $(w wrk_lat_p999_us) us, max $(w wrk_lat_max_us) us"
    echo "RSS:          start $(mib "$rss_start") MiB; warm-up $(mib "$rss_warm") MiB (t=${warm_t}s, $warm_n responses); end $(mib "$rss_end") MiB; peak $(mib "$rss_peak") MiB; 5 s idle after $(mib "$rss_idle") MiB"
    echo "RSS growth:   $(mib "$growth") MiB ($growth KiB) from warm-up to end (target < $max_growth_mib MiB)"
    echo "RSS by count: $(for k in 100000 250000 500000 750000 "$total"; do read -r _ n r <<<"$(rss_at "$k")"; [[ -n "$r" ]] && printf '%s→%s ' "$n" "$(mib "$r")"; done)(responses→MiB)"
    echo "after load:   GET / → $after_status; server exit status after SIGTERM: $server_rc"
    echo "server log:   $(stat -c %s "$out/server.log") bytes, $log_raises '/raise' tracebacks, $(grep -c . <<<"$log_other" || true) other non-INFO lines"
    if [[ -n "$log_other" ]]; then
        echo "$log_other" | head -20 | sed 's/^/    /'
    fi
    echo "files:        $out/{wrk.txt,rss.tsv,server.log}"
} | tee "$out/summary.txt"

fail=()
((socket_errors == 0)) || fail+=("$socket_errors socket errors")
(($(w soak_other) == 0)) || fail+=("$(w soak_other) responses neither 200 nor 500")
(($(w soak_responses) == total)) || fail+=("only $(w soak_responses) of $total responses")
((growth < max_growth_mib * 1024)) || fail+=("RSS grew $(mib "$growth") MiB")
[[ "$after_status" == 200 ]] || fail+=("GET / after the load answered $after_status")
[[ -z "$log_other" ]] || fail+=("unexpected server log lines")
if ((${#fail[@]})); then
    echo "RESULT: FAIL (${fail[*]})" | tee -a "$out/summary.txt"
    exit 1
fi
echo "RESULT: PASS" | tee -a "$out/summary.txt"
