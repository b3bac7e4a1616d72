"""Debian's nginx for the tests: a shipped site config rendered with test paths and ports
(``render``), run in the foreground as the current user in a temporary prefix (``Nginx``)."""

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from helpers import _Reader

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def render(path, replacements):
    text = path.read_text()
    for old, new in replacements:
        assert old in text, f"{path.name} no longer contains {old!r}"
        text = text.replace(old, new)
    return text


class Nginx:
    """nginx in the foreground with ``site`` as its only server file, logging to stderr."""

    def __init__(self, tmp, site):
        self.root = Path(tempfile.mkdtemp(prefix="nginx-", dir=tmp))
        (self.root / "site.conf").write_text(site)
        temp = {name: self.root / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        # As root nginx would switch its workers to `nobody`, who cannot reach pytest's tmp.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        (self.root / "nginx.conf").write_text(
            f"""
            {user}
            daemon off;
            worker_processes 1;
            pid {self.root}/nginx.pid;
            error_log stderr notice;
            events {{ worker_connections 256; }}
            http {{
                include /etc/nginx/mime.types;
                access_log {self.root}/access.log;
                client_body_temp_path {temp["body"]};
                proxy_temp_path {temp["proxy"]};
                fastcgi_temp_path {temp["fastcgi"]};
                uwsgi_temp_path {temp["uwsgi"]};
                scgi_temp_path {temp["scgi"]};
                include {self.root}/site.conf;
            }}
            """
        )
        self.proc = subprocess.Popen(
            [NGINX, "-e", "stderr", "-p", str(self.root), "-c", str(self.root / "nginx.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._cond = threading.Condition()
        self._err = _Reader(self.proc.stderr, self._cond)
        self._err.start()
        # The master binds every listener before it starts a worker.
        deadline = time.monotonic() + 20
        with self._cond:
            while not any("start worker process" in line for line in self._err.lines):
                remaining = deadline - time.monotonic()
                if self._err.eof or remaining <= 0:
                    raise AssertionError("nginx did not start:\n" + "\n".join(self._err.lines))
                self._cond.wait(remaining)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._err.join(5)
