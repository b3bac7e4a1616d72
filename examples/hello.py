"""The demo app: a page that shows what the server handed the app."""

import html


def app(environ, start_response):
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in sorted(environ.items())
    )
    body = (
        f"<!doctype html><title>ferrocorn</title><h1>Hello from ferrocorn</h1><table>{rows}</table>"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [body]
