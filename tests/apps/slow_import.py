"""An app whose import waits until the test opens, writes and closes the FIFO named by
FERROCORN_TEST_IMPORT_GATE (so a test sees the server while its app is still loading, without
guessing how long an import takes)."""

import os

with open(os.environ["FERROCORN_TEST_IMPORT_GATE"], "rb") as gate:
    gate.read()


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"loaded"]
