//! WSGI behaviour seen from the client: streaming, errors, and the server surviving them.

use std::time::Duration;

use crate::support::{exchange, serve, statuses};

const APP: &str = r#"
def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise RuntimeError("boom")
    if path == "/stream":
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"one,"
            yield b""
            yield b"two"
        return gen()
    if path == "/midway":
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"partial"
            raise RuntimeError("mid-body")
        return gen()
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body[::-1]]
    start_response("204 No Content", [])
    return [b"ignored"]
"#;

#[test]
fn a_generator_streams_chunked_after_start_response_in_its_first_step() {
    let server = serve(APP, 2);
    let raw = exchange(
        server.addr,
        b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(statuses(&raw), vec![200], "{raw}");
    assert!(raw.contains("transfer-encoding: chunked"), "{raw}");
    assert!(raw.contains("4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n"), "{raw}");
}

#[test]
fn an_exception_is_a_500_and_the_server_keeps_serving() {
    let server = serve(APP, 1);
    let raw = exchange(
        server.addr,
        b"GET /raise HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(statuses(&raw), vec![500], "{raw}");
    let raw = exchange(
        server.addr,
        b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(statuses(&raw), vec![200], "{raw}");
}

#[test]
fn an_exception_mid_body_leaves_the_chunked_body_unterminated() {
    let server = serve(APP, 1);
    let raw = exchange(
        server.addr,
        b"GET /midway HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(statuses(&raw), vec![200], "{raw}");
    assert!(raw.contains("7\r\npartial\r\n"), "{raw}");
    assert!(!raw.ends_with("0\r\n\r\n"), "{raw}");
}

#[test]
fn chunked_request_bodies_reach_wsgi_input() {
    let server = serve(APP, 1);
    let raw = exchange(
        server.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(statuses(&raw), vec![200], "{raw}");
    assert!(raw.ends_with("\r\n\r\nedcba"), "{raw}");
}

#[test]
fn no_body_for_204() {
    let server = serve(APP, 1);
    let raw = exchange(
        server.addr,
        b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(statuses(&raw), vec![204], "{raw}");
    assert!(!raw.contains("ignored"), "{raw}");
}
