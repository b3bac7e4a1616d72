"""How long `ferrocorn --dev` takes from saving a Django view to serving the new code.

Copies tests/apps/djangoproject to a temporary directory, adds a `/hello/` view, starts
`ferrocorn --dev` there (no APP: found from manage.py), then edits the view ten times, 0.3 s
apart, and times each edit until a request gets the new text. Run from the repository root with
ferrocorn on PATH: `python benches/dev/reload.py`.
"""

import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2] / "tests" / "apps" / "djangoproject"


def main():
    tmp = Path(tempfile.mkdtemp())
    proj = tmp / "proj"
    shutil.copytree(PROJECT, proj, ignore=shutil.ignore_patterns("__pycache__"))
    views = proj / "notes" / "views.py"
    views.write_text(
        views.read_text()
        + '\n\ndef hello(request):\n    return HttpResponse("v0", content_type="text/plain")\n'
    )
    urls = proj / "notes" / "urls.py"
    urls.write_text(
        urls.read_text().replace(
            'path("", views.index, name="index"),',
            'path("", views.index, name="index"),\n    path("hello/", views.hello),',
        )
    )
    server = subprocess.Popen(
        ["ferrocorn", "--dev", "-b", "127.0.0.1:0"],
        cwd=proj,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FERROCORN_DJANGO_DATA_DIR": str(tmp)},
    )
    port = None
    while port is None:
        m = re.search(r"Listening at: http://127.0.0.1:(\d+)", server.stderr.readline())
        port = m and m.group(1)
    # The log must be drained, or the server blocks writing it.
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()

    def get():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/", timeout=10) as r:
                return r.read()
        except OSError as e:
            return repr(e).encode()

    try:
        while get() != b"v0":
            pass
        latencies = []
        for i in range(1, 11):
            time.sleep(0.3)
            views.write_text(views.read_text().replace(f'"v{i - 1}"', f'"v{i}"'))
            saved = time.monotonic()
            while get() != f"v{i}".encode():
                pass
            latencies.append(time.monotonic() - saved)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"save -> new code served (s), 10 edits: median {statistics.median(latencies):.3f}, "
        f"min {min(latencies):.3f}, max {max(latencies):.3f}"
    )


if __name__ == "__main__":
    main()
