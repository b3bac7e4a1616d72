"""A small Flask app (tests/apps/flaskapp) served by the server: JSON
routes, a form POST, a streamed response and a multipart file upload."""

import hashlib

import pytest
import requests
from helpers import RawConnection


@pytest.fixture(scope="module")
def flask_server(module_server_factory):
    return module_server_factory("flaskapp:app", ["--threads", "2"])


def test_json_route(flask_server):
    resp = requests.get(flask_server.url + "/api/hello", params={"name": "ferrocorn"}, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {"message": "hello ferrocorn"}


def test_json_post_is_echoed(flask_server):
    payload = {"numbers": [1, 2, 3], "text": "naïve ☃"}
    resp = requests.post(flask_server.url + "/api/echo", json=payload, timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"received": payload, "content_type": "application/json"}


def test_form_post(flask_server):
    assert "<form" in requests.get(flask_server.url + "/form", timeout=10).text
    resp = requests.post(
        flask_server.url + "/form",
        data=[("name", "Ada Lovelace"), ("colour", "green"), ("colour", "blue & gold")],
        timeout=10,
    )
    assert resp.status_code == 200
    assert resp.json() == {"fields": {"name": ["Ada Lovelace"], "colour": ["green", "blue & gold"]}}


def test_streamed_response(flask_server):
    with RawConnection(flask_server.port) as conn:
        resp = conn.request("GET", "/stream?n=4&delay=0.05")
    assert resp.status == 200
    assert resp.header("Transfer-Encoding") == "chunked"
    assert resp.chunks == [f"line {i} for /stream\n".encode() for i in range(4)]


def test_streamed_response_with_requests(flask_server):
    with requests.get(flask_server.url + "/stream?n=50", stream=True, timeout=10) as resp:
        lines = list(resp.iter_lines())
    assert lines == [f"line {i} for /stream".encode() for i in range(50)]


@pytest.mark.parametrize("size", [0, 100, 2 * 1024 * 1024])
def test_file_upload(flask_server, size):
    payload = bytes((i * 7) % 256 for i in range(size))
    resp = requests.post(
        flask_server.url + "/upload",
        files={"file": ("data.bin", payload, "application/octet-stream")},
        data={"note": "uploaded"},
        timeout=30,
    )
    assert resp.status_code == 200
    assert resp.json() == {
        "filename": "data.bin",
        "size": size,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "note": "uploaded",
    }


def test_not_found_and_method_not_allowed(flask_server):
    assert requests.get(flask_server.url + "/missing", timeout=10).status_code == 404
    assert requests.get(flask_server.url + "/upload", timeout=10).status_code == 405


def test_app_factory(server_factory):
    server = server_factory("flaskapp:create_app()")
    assert requests.get(server.url + "/api/hello", timeout=10).json() == {"message": "hello world"}
