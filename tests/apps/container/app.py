"""The app the container test (test_container.py) builds into the image: a page, who the server
runs as, and a slow answer to watch a graceful stop drain."""

import json
import os
import sys
import time


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/slow":
        # Sleeps for ?seconds, then answers: a request in flight when TERM arrives.
        seconds = float(environ.get("QUERY_STRING", "").partition("=")[2] or "2")
        print(f"slow request started ({seconds} s)", file=sys.stderr, flush=True)
        time.sleep(seconds)
        body = f"slept {seconds}".encode()
    elif path == "/whoami":
        body = json.dumps(
            {"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(), "cwd": os.getcwd()}
        ).encode()
    else:
        body = b"<!doctype html><title>ferrocorn</title><h1>Hello from a container</h1>"
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [body]
