"""hello over each protocol ferrocorn speaks, with h2load: plain HTTP/1.1, HTTP/1.1 over TLS,
HTTP/2 over TLS (ALPN), and cleartext HTTP/2 (prior knowledge), beside gunicorn gthread over
TLS. The server runs on CPU 0 and h2load on CPU 1; each configuration is run --reps times,
interleaved, and the median and spread of requests/s are printed as a markdown table.

    PATH=.venv/bin:$PATH python benches/protocols/run.py [--reps 3] [--seconds 10]
"""

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from tls_certs import make_certs

# The peers' hello app (../shared/peerbench).
APP = ROOT.parent / "shared" / "peerbench" / "apps"


def start(cmd):
    """Starts ``cmd`` on CPU 0 and returns it with its port, once it says it listens."""
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *cmd], cwd=APP, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # A server that never says it listens is killed, which ends the loop below.
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    for line in proc.stderr:
        m = re.search(r"Listening at: \w+://[\d.]+:(\d+)", line)
        if m:
            watchdog.cancel()
            # Keep draining: a server blocks on a full pipe.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, int(m.group(1))
    raise RuntimeError(f"{cmd[0]} did not start")


def h2load(url, seconds, h1, streams):
    args = ["taskset", "-c", "1", "h2load", "-D", str(seconds), "--warm-up-time", "1",
            "-c", "64", "-t", "1", "-m", str(streams)]  # fmt: skip
    if h1:
        args.append("--h1")
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))
    ok = re.search(
        r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", out
    )
    return rate, int(ok.group(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    opts = ap.parse_args()
    certs = make_certs(tempfile.mkdtemp(prefix="ferrocorn-bench-certs-"))
    tls = ["--certfile", str(certs.path("ec.pem")), "--keyfile", str(certs.path("ec-sec1.key"))]
    ferro = [shutil.which("ferrocorn"), "--workers", "2", "--threads", "4", "--bind",
             "127.0.0.1:0"]  # fmt: skip
    gunicorn = [shutil.which("gunicorn"), "--worker-class", "gthread", "--workers", "2",
                "--threads", "4", "--bind", "127.0.0.1:0"]  # fmt: skip
    configs = [
        # name, command, scheme, h1, streams per connection
        ("ferrocorn HTTP/1.1", [*ferro, "hello:app"], "http", True, 1),
        ("ferrocorn HTTP/1.1 + TLS", [*ferro, *tls, "hello:app"], "https", True, 1),
        ("ferrocorn HTTP/2 + TLS (ALPN)",
         [*ferro, *tls, "--http-protocols", "h2,h1", "hello:app"], "https", False, 1),
        ("ferrocorn HTTP/2 + TLS, 10 streams",
         [*ferro, *tls, "--http-protocols", "h2,h1", "hello:app"], "https", False, 10),
        ("ferrocorn h2c (prior knowledge)",
         [*ferro, "--http-protocols", "h1,h2", "--http2-cleartext", "prior-knowledge",
          "hello:app"], "http", False, 1),
        ("gunicorn gthread HTTP/1.1 + TLS", [*gunicorn, *tls, "hello:app"], "https", True, 1),
    ]  # fmt: skip
    results = {name: [] for name, *_ in configs}
    failed = {name: 0 for name, *_ in configs}
    for _ in range(opts.reps):
        for name, cmd, scheme, h1, streams in configs:
            proc, port = start(cmd)
            try:
                rate, bad = h2load(f"{scheme}://127.0.0.1:{port}/", opts.seconds, h1, streams)
            finally:
                proc.terminate()
                proc.wait(30)
            results[name].append(rate)
            failed[name] += bad
            print(f"{name}: {rate:,.0f} req/s, {bad} failed", file=sys.stderr)
    print("| server and protocol | req/s (median) | min–max | failed |")
    print("|---|---|---|---|")
    for name, rates in results.items():
        print(f"| {name} | {statistics.median(rates):,.0f} | {min(rates):,.0f}–{max(rates):,.0f} "
              f"| {failed[name]} |")  # fmt: skip


if __name__ == "__main__":
    main()
