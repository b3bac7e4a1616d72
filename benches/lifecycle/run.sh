#!/usr/bin/env bash
# Lifecycle under load: wrk hammers a hello app while the server is reloaded, recycled or has a
# worker killed; prints wrk's totals (socket errors and non-2xx answers are the failures).
# Usage: benches/lifecycle/run.sh   (ferrocorn and wrk on PATH; ~1 minute)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/../../tests/apps/lifecycle/versioned.py" "$work/app.py"

# Starts ferrocorn with "$@" on a free port; sets $pid and $port.
start() {
    ferrocorn --chdir "$work" --bind 127.0.0.1:0 "$@" app:application 2>"$work/err" &
    pid=$!
    until grep -q "Booting worker pool" "$work/err" 2>/dev/null; do sleep 0.05; done
    port=$(grep -o 'Listening at: http://127.0.0.1:[0-9]*' "$work/err" | head -1 | grep -o '[0-9]*$')
}
stop() { kill -TERM "$pid"; wait "$pid" || true; }
load() { wrk -t2 -c16 -d"$1" "http://127.0.0.1:$port/" | grep -E "requests in|Socket errors|Non-2xx" || true; }

echo "== single process, 5 x SIGHUP during 9 s of load"
start --threads 4
load 9s & w=$!
for i in 1 2 3 4 5; do sleep 1.5; kill -HUP "$pid"; done
wait "$w"; stop

echo "== --processes 2, 5 x SIGHUP during 9 s of load"
start --processes 2 --threads 4
load 9s & w=$!
for i in 1 2 3 4 5; do sleep 1.5; kill -HUP "$pid"; done
wait "$w"; stop

echo "== single process, --max-requests 1000 --max-requests-jitter 50, 6 s of load"
start --threads 4 --max-requests 1000 --max-requests-jitter 50
load 6s; echo "thread recycles: $(grep -c Autorestart "$work/err")"; stop

echo "== --processes 2, --max-requests 3000, 6 s of load"
start --processes 2 --threads 4 --max-requests 3000
load 6s; echo "process recycles: $(grep -c Autorestart "$work/err")"; stop

echo "== --processes 2, kill -9 of one worker during 6 s of load"
start --processes 2 --threads 4
load 6s & w=$!
sleep 2; kill -9 "$(pgrep -P "$pid" | head -1)"
wait "$w"; echo "replaced: $(grep -c 'Perhaps out of memory' "$work/err")"; stop

echo "== SIGTERM during load (new connections refused afterwards)"
start --threads 4
load 4s & w=$!
sleep 2; kill -TERM "$pid"; wait "$pid" || true
wait "$w"
