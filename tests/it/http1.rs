//! Connection behaviour: keep-alive, pipelining, refusing smuggling attempts before the app.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{exchange, serve, statuses};

const COUNTER: &str = r#"
import itertools
calls = itertools.count(1)

def app(environ, start_response):
    body = ("%s %d" % (environ["PATH_INFO"], next(calls))).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"#;

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let server = serve(COUNTER, 2);
    let raw = exchange(
        server.addr,
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(statuses(&raw), vec![200, 200, 200], "{raw}");
    let (a, b, c) = (
        raw.find("/a ").unwrap(),
        raw.find("/b ").unwrap(),
        raw.find("/c ").unwrap(),
    );
    assert!(a < b && b < c, "{raw}");
    assert!(raw.contains("content-length: 4"), "{raw}");
    assert!(
        raw.to_ascii_lowercase().contains("server: ferrocorn"),
        "{raw}"
    );
}

#[test]
fn smuggling_attempts_get_400_and_never_reach_the_app() {
    let server = serve(COUNTER, 1);
    let raw = exchange(
        server.addr,
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(statuses(&raw), vec![400], "{raw}");
    assert!(!raw.contains("smuggled"), "{raw}");
    // The app was never called: the next request is its first.
    let next = exchange(
        server.addr,
        b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(next.contains("/after 1"), "{next}");
}

#[test]
fn an_idle_keep_alive_connection_serves_the_next_request() {
    let server = serve(COUNTER, 1);
    let mut conn = TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answers = Vec::new();
    for path in ["/one", "/two"] {
        // The second request goes out only after the first answer is read, on the same socket.
        conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).unwrap();
        answers.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(statuses(&answers[0]), vec![200], "{answers:?}");
    assert!(!answers[0].contains("connection: close"), "{answers:?}");
    assert!(answers[1].ends_with("/two 2"), "{answers:?}");
}
