"""wsgi_apps' router plus ``/block?gate=PATH``: sends ``started``, then waits until the test
opens and closes the FIFO at PATH (no HTTP request is needed to let it go, so it works while
every pool thread is taken), then sends ``released``."""

from urllib.parse import parse_qs

import wsgi_apps


def block(environ, start_response):
    gate = parse_qs(environ.get("QUERY_STRING", ""))["gate"][0]
    start_response("200 OK", [("Content-Type", "text/plain")])

    def generate():
        yield b"started\n"
        with open(gate, "rb") as g:
            g.read()
        yield b"released\n"

    return generate()


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/block":
        return block(environ, start_response)
    return wsgi_apps.application(environ, start_response)
