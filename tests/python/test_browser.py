"""A real browser on ``ferrocorn --dev``: headless Chromium (Debian's ``chromium``, which
scripts/test installs) loads the Django admin login page from the test project, served with
``--dev`` and no APP from the project's directory, and the admin's CSS is applied: the header's
computed style is the one base.css gives it, base.css is among the page's style sheets, and
the browser got it from ferrocorn (its response headers, the access log). A screenshot of the
page is kept in tests/artifacts/admin-login.png.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: it reads
commands from its fd 3 and writes answers and events to its fd 4, each a JSON message ending
with a NUL byte), which needs no websocket client and no port to find. The test is skipped
only when no Chromium is installed, and against gunicorn, which has no ``--dev``.
"""

import base64
import fcntl
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
import requests
from helpers import DJANGO_DIR, IS_GUNICORN, REPO, server_env

pytestmark = pytest.mark.skipif(IS_GUNICORN, reason="--dev is ferrocorn's")

WIDTH, HEIGHT = 1280, 800
ARTIFACT = REPO / "tests" / "artifacts" / "admin-login.png"
CDP_TIMEOUT = 30.0


def find_chromium():
    """The Chromium to drive: FERROCORN_CHROMIUM, or ``chromium`` (Debian) on PATH."""
    named = os.environ.get("FERROCORN_CHROMIUM")
    if named:
        return shutil.which(named) or pytest.fail(f"FERROCORN_CHROMIUM={named} is not found")
    return shutil.which("chromium") or shutil.which("chromium-browser")


class CdpError(Exception):
    pass


class Chromium:
    """Headless Chromium and a DevTools protocol client on its debugging pipe."""

    def __init__(self, exe, profile, log_path):
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # The child's ends go to its fds 3 and 4 through bash's redirections (dash takes no fd
        # above 9); moved to 10 and up first so that neither is 3 or 4 already (which the first
        # redirection would clobber).
        child_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--force-color-profile=srgb",
            "--hide-scrollbars",
            f"--window-size={WIDTH},{HEIGHT}",
            "about:blank",
        ]
        script = f'exec "$0" "$@" 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-'
        self.log_path = log_path
        try:
            with open(log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    [shutil.which("bash") or "/bin/bash", "-c", script, exe, *args],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    pass_fds=(child_r, child_w),
                    start_new_session=True,  # its renderers and helpers share the process group
                )
        except BaseException:
            os.close(to_chrome_w)
            os.close(from_chrome_r)
            raise
        finally:
            os.close(child_r)
            os.close(child_w)
        self._wfd = to_chrome_w
        self._rfd = from_chrome_r
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()
        self._next_id = 0
        self._answers = {}
        self.events = []
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        pending = b""
        try:
            while True:
                chunk = os.read(self._rfd, 1 << 16)
                if not chunk:
                    break
                *messages, pending = (pending + chunk).split(b"\0")
                with self._cond:
                    for raw in messages:
                        msg = json.loads(raw)
                        if "id" in msg:
                            self._answers[msg["id"]] = msg
                        else:
                            self.events.append(msg)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def log_tail(self):
        return Path(self.log_path).read_text(errors="replace")[-3000:]

    def _gone(self, what):
        return CdpError(f"{what}: Chromium is gone (exit {self.proc.poll()})\n{self.log_tail()}")

    def send(self, method, params=None, session=None, timeout=CDP_TIMEOUT):
        """Sends one command and waits for its answer; returns its result."""
        with self._cond:
            self._next_id += 1
            msg_id = self._next_id
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        with self._write_lock:
            try:
                while data:
                    data = data[os.write(self._wfd, data) :]
            except BrokenPipeError:
                raise self._gone(method) from None
        deadline = time.monotonic() + timeout
        with self._cond:
            while msg_id not in self._answers:
                remaining = deadline - time.monotonic()
                if self._eof:
                    raise self._gone(method)
                if remaining <= 0:
                    raise CdpError(f"{method}: no answer in {timeout} s\n{self.log_tail()}")
                self._cond.wait(remaining)
            answer = self._answers.pop(msg_id)
        if "error" in answer:
            raise CdpError(f"{method} {params}: {answer['error']}")
        return answer["result"]

    def mark(self):
        """Index of the next event, for ``wait_event(since=...)``."""
        with self._cond:
            return len(self.events)

    def events_of(self, method, session=None, since=0):
        with self._cond:
            return [
                e["params"]
                for e in self.events[since:]
                if e["method"] == method and (session is None or e.get("sessionId") == session)
            ]

    def wait_event(self, method, session=None, since=0, timeout=CDP_TIMEOUT):
        """Waits for an event ``method`` (of ``session``) from index ``since``; its params."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events[since:]:
                    if e["method"] == method and (session is None or e.get("sessionId") == session):
                        return e["params"]
                since = max(since, len(self.events))
                remaining = deadline - time.monotonic()
                if self._eof:
                    raise self._gone(f"waiting for {method}")
                if remaining <= 0:
                    raise CdpError(f"no {method} in {timeout} s\n{self.log_tail()}")
                self._cond.wait(remaining)

    def close(self):
        """Asks Chromium to quit, then kills whatever of its process group is left."""
        if self.proc.poll() is None and not self._eof:
            try:
                self.send("Browser.close", timeout=5)
            except CdpError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(10)
        os.close(self._wfd)
        self._reader.join(10)
        os.close(self._rfd)


class Page:
    """One tab of ``browser``, attached in flat mode (commands carry its session id)."""

    def __init__(self, browser, width, height):
        self.browser = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        self.send("Page.enable")
        self.send("Network.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        # The admin has a dark theme (dark_mode.css); the light one is what base.css's :root gives.
        self.send(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": "light"}]},
        )

    def send(self, method, params=None, timeout=CDP_TIMEOUT):
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def navigate(self, url):
        """Loads ``url`` and waits for its load event (style sheets are in by then)."""
        since = self.browser.mark()
        nav = self.send("Page.navigate", {"url": url})
        assert "errorText" not in nav, f"navigating to {url}: {nav['errorText']}"
        self.browser.wait_event("Page.loadEventFired", self.session, since)
        return since

    def responses(self, since=0):
        """``{url: response}`` of the Network.responseReceived events from ``since``."""
        return {
            p["response"]["url"]: p["response"]
            for p in self.browser.events_of("Network.responseReceived", self.session, since)
        }

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"]["value"]

    def screenshot(self):
        """A PNG of the viewport."""
        data = self.send("Page.captureScreenshot", {"format": "png", "fromSurface": True})["data"]
        return base64.b64decode(data)


@pytest.fixture
def chromium(tmp_path):
    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium: install Debian's chromium (scripts/test does: apt-get)")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    browser = Chromium(exe, profile, tmp_path / "chromium.log")
    try:
        version = browser.send("Browser.getVersion")
        assert "HeadlessChrome" in version["userAgent"], version
        yield browser
    finally:
        browser.close()


@pytest.fixture
def django_data(tmp_path):
    """A data directory whose SQLite database was just migrated."""
    data = tmp_path / "django-data"
    data.mkdir()
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=DJANGO_DIR,
        env=server_env({"FERROCORN_DJANGO_DATA_DIR": str(data)}),
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"migrate failed:\n{result.stdout}\n{result.stderr}"
    return data


# -- what base.css says, and what the screenshot shows ------------------------------------------


def root_variable(css, name):
    """The value of the custom property ``name`` in the first ``:root`` block of ``css``,
    with ``var(--other)`` references resolved."""
    block = re.search(r":root\s*\{(.*?)\}", css, re.DOTALL)
    assert block, "no :root block in base.css"
    props = dict(re.findall(r"(--[\w-]+)\s*:\s*([^;]+);", block.group(1)))
    value = props[name].strip()
    while (ref := re.fullmatch(r"var\((--[\w-]+)\)", value)) is not None:
        value = props[ref.group(1)].strip()
    return value


def hex_to_rgb(value):
    """``#417690`` (or ``#ffc``) as the (r, g, b) a computed style gives."""
    digits = value.lstrip("#")
    assert re.fullmatch(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}", digits), f"not a hex color: {value}"
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))


def css_rgb(rgb):
    return "rgb({}, {}, {})".format(*rgb)


def png_size(png):
    """(width, height) from the IHDR chunk, after checking the signature."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", png[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", png[16:24])


def png_pixel(png, x, y):
    """The (r, g, b) at (x, y) of an 8-bit RGB or RGBA non-interlaced PNG. A pixel's filters
    use only pixels left of and above it: the rows up to y are unfiltered up to x."""
    width, _ = png_size(png)
    depth, color_type, _, _, interlace = struct.unpack(">BBBBB", png[24:29])
    assert depth == 8 and color_type in (2, 6) and interlace == 0, (depth, color_type, interlace)
    channels = 3 if color_type == 2 else 4
    idat, pos = b"", 8
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        if kind == b"IDAT":
            idat += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    used = (x + 1) * channels
    prev = bytearray(used)
    for row in range(y + 1):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + used])
        for i in range(used):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        prev = line
    return tuple(prev[x * channels : x * channels + 3])


# -- the test -----------------------------------------------------------------------------------


PAGE_STATE = """(() => {
    const header = document.querySelector('#header');
    const style = header && getComputedStyle(header);
    const base = Array.from(document.styleSheets).find(s => /\\/base\\.css$/.test(s.href || ''));
    return {
        title: document.title,
        sheets: Array.from(document.styleSheets, s => s.href),
        baseRules: base ? base.cssRules.length : 0,
        header: style && {
            display: style.display,
            justifyContent: style.justifyContent,
            backgroundColor: style.backgroundColor,
            color: style.color,
        },
        headerBox: header && header.getBoundingClientRect().toJSON(),
        bodyBackground: getComputedStyle(document.body).backgroundColor,
        loginForm: !!document.querySelector('#login-form'),
    };
})()"""


def test_chromium_loads_the_admin_login_page_with_its_css_from_dev(
    server_factory, chromium, django_data
):
    import django

    ARTIFACT.unlink(missing_ok=True)  # a failure before the screenshot leaves no stale one
    server = server_factory(
        None,
        ["--dev"],
        chdir=None,
        cwd=DJANGO_DIR,
        env={"FERROCORN_DJANGO_DATA_DIR": str(django_data), "FERROCORN_DJANGO_DEBUG": "1"},
    )
    # No APP: the banner says the project was found from manage.py.
    server.wait_for_log(r"found by manage\.py: DJANGO_SETTINGS_MODULE=myproject\.settings")

    page = Page(chromium, WIDTH, HEIGHT)
    since = page.navigate(server.url + "/admin/login/")

    # The screenshot first: it is kept even when an assertion below fails.
    png = page.screenshot()
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_bytes(png)
    assert len(png) > 5 * 1024, f"a {len(png)}-byte screenshot is too small for the page"
    assert png_size(ARTIFACT.read_bytes()) == (WIDTH, HEIGHT)

    # What the browser got, and from whom.
    responses = page.responses(since)
    base_url = server.url + "/static/admin/css/base.css"
    for url in (server.url + "/admin/login/", base_url):
        assert url in responses, f"no response for {url}; got {sorted(responses)}"
        headers = {k.lower(): v for k, v in responses[url]["headers"].items()}
        assert responses[url]["status"] == 200, (url, responses[url]["status"])
        assert headers.get("server") == "ferrocorn", (url, headers)
    assert responses[base_url]["mimeType"] == "text/css", responses[base_url]
    server.wait_for_log(r"\b200\b.*\bGET /static/admin/css/base\.css\b")

    # The CSS the page uses is Django's base.css, as served.
    served = requests.get(base_url, timeout=10)
    installed = Path(django.__file__).parent / "contrib/admin/static/admin/css/base.css"
    assert served.content == installed.read_bytes()
    header_bg = hex_to_rgb(root_variable(served.text, "--header-bg"))
    header_fg = hex_to_rgb(root_variable(served.text, "--header-color"))
    page_bg = hex_to_rgb(root_variable(served.text, "--darkened-bg"))

    state = page.evaluate(PAGE_STATE)
    assert state["title"].startswith("Log in"), state
    assert state["loginForm"], state
    for sheet in ("base.css", "login.css"):
        assert f"{server.url}/static/admin/css/{sheet}" in state["sheets"], state["sheets"]
    assert state["baseRules"] > 50, state
    # Without the CSS the <header> is display: block, left-aligned (normal), black on a
    # transparent background, and so is the body: base.css and login.css make them these.
    assert state["header"] == {
        "display": "flex",
        "justifyContent": "center",
        "backgroundColor": css_rgb(header_bg),
        "color": css_rgb(header_fg),
    }, state
    assert state["bodyBackground"] == css_rgb(page_bg), state

    # And that is what was painted: the page's corner, and inside the header's box.
    box = state["headerBox"]
    assert box["width"] > 200 and box["height"] > 20, box
    inside = (int(box["left"]) + 10, int(box["top"]) + 10)
    for (x, y), expected in (((5, 5), page_bg), (inside, header_bg)):
        painted = png_pixel(png, x, y)
        assert all(abs(p - e) <= 2 for p, e in zip(painted, expected)), (x, y, painted, expected)
