"""Which user and group serve the request: ``uid gid euid egid`` as text.

It imports only ``os``, which the interpreter has loaded before ferrocorn switches user: the
test machine's standard library lives where only root can read it, so an app importing
anything more could not be loaded by ``nobody`` there (a property of that machine, not of
the server).
"""

import os


def application(environ, start_response):
    body = f"{os.getuid()} {os.getgid()} {os.geteuid()} {os.getegid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
