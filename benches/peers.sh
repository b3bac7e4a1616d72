#!/usr/bin/env bash
# benches/peers.sh — ferrocorn beside the peer WSGI servers, in one peerbench run.
#
# Installs ferrocorn from this checkout into the peerbench venv (maturin build), then runs
# peerbench (../../shared/peerbench, relative to this script; its setup_env.sh must have been run)
# with gunicorn (gthread, sync), granian (-w1, 4 blocking threads) and the bare-hyper ceiling,
# plus ferrocorn twice: `--workers 2 --threads 4` (same pool as gunicorn gthread) and
# `--workers 1 --threads 4`. Server pinned on CPU 0, wrk on CPU 1. Prints the markdown report.
#
# Usage: benches/peers.sh [OUT.json]      (default: peerbench's results/ferrocorn-STAMP.json)
# Environment: REPS (default 3), WORKLOADS (default hello,django-html,django-json,stream,upload,download)
# Takes about 25-35 minutes with the defaults; needs a quiet machine.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
bench="$(cd "$(dirname "$0")/../../shared/peerbench" && pwd)"
venv="$bench/.venv"

reps="${REPS:-3}"
workloads="${WORKLOADS:-hello,django-html,django-json,stream,upload,download}"
out="${1:-$bench/results/ferrocorn-$(date -u +%Y%m%dT%H%M%SZ).json}"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"

echo "==> pip install $repo into $venv"
"$venv/bin/pip" install --quiet "$repo"
"$venv/bin/ferrocorn" --version

cd "$bench"
echo "==> peerbench run -> $out"
python3 peerbench.py run --mode pinned --reps "$reps" --workers 2 --threads 4 \
    --peers gunicorn-gthread,gunicorn-sync,granian-w1-bt4,hyper \
    --server "ferrocorn=ferrocorn --workers {workers} --threads {threads} --bind {host}:{port} {app}" \
    --server "ferrocorn-w1t4=ferrocorn --workers 1 --threads 4 --bind {host}:{port} {app}" \
    --workloads "$workloads" \
    --out "$out"

echo
python3 peerbench.py report "$out"
