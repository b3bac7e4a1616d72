#!/usr/bin/env bash
# benches/peers.sh — ferrocorn beside the peer WSGI servers: the proof issue 5 asks for.
#
# Installs ferrocorn from this checkout into the peerbench venv, then runs peerbench
# (../../shared/peerbench, relative to this script; run its setup_env.sh first) three times:
#   main     every peer peerbench knows (gunicorn sync and gthread, granian, waitress, uWSGI,
#            bjoern, pyruvate, nginx, the bare hyper server) and ferrocorn `--workers 2
#            --threads 4` (gunicorn gthread's pool) and `--workers 1 --threads 4`, on every
#            workload, pinned and unpinned ($MODE), $REPS repetitions interleaved;
#   memory   ferrocorn `--workers 1` and `--workers 32` on django-html and django-json, pinned:
#            the RSS target;
#   procs    `--processes 2 --workers 1 --threads 4` against gunicorn gthread `-w 2 --threads 4`
#            on django-json, unpinned (both cores).
# Then prints one report over the three result files.
#
# Usage: benches/peers.sh [OUTDIR]        (default: peerbench's results/issue5-STAMP/)
# Environment: REPS (3), MODE (both), WORKLOADS (all), PARTS ("main memory procs"), DURATION
# (seconds of wrk per run, 10).
# The main part takes about two hours on 2 vCPUs with the defaults (DURATION=6: about 85
# minutes); it needs a quiet machine
# (peerbench waits for quiet and redoes disturbed runs).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
bench="$(cd "$here/../../shared/peerbench" && pwd)"
venv="$bench/.venv"

reps="${REPS:-3}"
mode="${MODE:-both}"
workloads="${WORKLOADS:-hello,hello-c1,hello-c1000,django-html,django-json,stream,upload,download}"
parts="${PARTS:-main memory procs}"
duration="${DURATION:-10}"
out="${1:-$bench/results/issue5-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

echo "==> pip install $repo into $venv"
"$venv/bin/pip" install --quiet --force-reinstall --no-deps "$repo"
"$venv/bin/ferrocorn" --version

ferrocorn="ferrocorn --bind {host}:{port}"
cd "$bench"
files=()
for part in $parts; do
    echo "==> peerbench: $part -> $out/$part.json"
    case $part in
        main)
            python3 peerbench.py run --mode "$mode" --reps "$reps" --workers 2 --threads 4 \
                --duration "$duration" \
                --server "ferrocorn=$ferrocorn --workers {workers} --threads {threads} {app}" \
                --server "ferrocorn-w1t4=$ferrocorn --workers 1 --threads 4 {app}" \
                --workloads "$workloads" --out "$out/main.json" ;;
        memory)
            python3 peerbench.py run --mode pinned --reps "$reps" --peers '' --duration "$duration" \
                --server "ferrocorn-w1=$ferrocorn --workers 1 {app}" \
                --server "ferrocorn-w32=$ferrocorn --workers 32 {app}" \
                --workloads django-html,django-json --out "$out/memory.json" ;;
        procs)
            python3 peerbench.py run --mode unpinned --reps "$reps" --workers 2 --threads 4 \
                --duration "$duration" --peers gunicorn-gthread \
                --server "ferrocorn-p2=$ferrocorn --processes 2 --workers 1 --threads 4 {app}" \
                --server "ferrocorn=$ferrocorn --workers {workers} --threads {threads} {app}" \
                --workloads django-json --out "$out/procs.json" ;;
        *) echo "unknown part: $part" >&2; exit 2 ;;
    esac
    files+=("$out/$part.json")
done

echo
python3 peerbench.py report "${files[@]}"
