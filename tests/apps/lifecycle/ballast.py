"""An app that holds 64 MiB from the moment it is imported (a large app's footprint)."""

BALLAST = bytearray(64 * 1024 * 1024)
for i in range(0, len(BALLAST), 4096):
    BALLAST[i] = 1


def application(environ, start_response):
    body = b"ballast"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "7")])
    return [body]
