//! StatsD (and DogStatsD) as gunicorn sends it, with gunicorn's metric names, types and prefix
//! rule, so dashboards built for gunicorn keep working: per request `gunicorn.request.duration`
//! (`|ms`), `gunicorn.requests` and `gunicorn.request.status.<code>` (`|c|@1.0`); `gunicorn.workers`
//! (`|g`) from the process that owns the server; `gunicorn.backlog` (`|h`) with
//! `--enable-backlog-metric`; `gunicorn.log.{critical,error,warning,exception}` counters for error
//! log lines. `--dogstatsd-tags` are appended as `|#tags`.
//!
//! Sending is fire and forget and never on a request's path: the request side only `try_send`s a
//! small value on a bounded channel (dropped when full), and one task formats the lines, packs
//! them into datagrams (newline-separated, as StatsD and DogStatsD read them) and sends them from
//! a non-blocking socket, dropping what the socket will not take.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{StatsdAddr, StatsdSettings};

/// Stats waiting to be sent; beyond this they are dropped.
const QUEUE: usize = 8192;
/// The largest UDP datagram sent (fits an Ethernet MTU with IP and UDP headers).
const UDP_DATAGRAM: usize = 1432;
/// ... over a Unix socket (DogStatsD's recommended size).
const UNIX_DATAGRAM: usize = 8192;

/// What is sent. Formatting happens on the sending task, not where the stat is recorded.
#[derive(Debug, Clone, Copy)]
enum Stat {
    /// One request answered: its duration, `requests` and `request.status.<code>`.
    Request {
        status: u16,
        elapsed: Duration,
    },
    Count(&'static str),
    Gauge(&'static str, u64),
    Histogram(&'static str, u64),
}

/// The sending side, cheap to clone.
#[derive(Debug, Clone)]
pub struct Statsd {
    tx: mpsc::Sender<Stat>,
}

/// Which `gunicorn.log.*` counter an error-log line counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    Critical,
    Error,
    Warning,
    Exception,
}

/// The `tracing` target that marks an error-log line as gunicorn's `log.exception` (an error
/// with a traceback).
pub const EXCEPTION_TARGET: &str = "ferrocorn::exception";
/// ... as `log.critical`.
pub const CRITICAL_TARGET: &str = "ferrocorn::critical";

static GLOBAL: OnceLock<Statsd> = OnceLock::new();

/// Makes `s` the process's StatsD client for error-log counters (`logging` reads it).
pub fn install(s: &Statsd) {
    let _ = GLOBAL.set(s.clone());
}

/// The process's StatsD client, when `--statsd-host` is set.
pub fn global() -> Option<&'static Statsd> {
    GLOBAL.get()
}

impl Statsd {
    /// Opens the socket for `cfg` and returns the client and the task that sends (spawn it
    /// once a runtime runs; stats recorded before wait in the queue).
    pub fn connect(cfg: &StatsdSettings) -> io::Result<(Statsd, Sender)> {
        let out = match &cfg.addr {
            StatsdAddr::Udp { host, port } => {
                use std::net::ToSocketAddrs;
                let addr = (host.as_str(), *port)
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
                    })?;
                let local: std::net::SocketAddr = match addr {
                    std::net::SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
                    std::net::SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
                };
                let sock = std::net::UdpSocket::bind(local)?;
                sock.connect(addr)?;
                sock.set_nonblocking(true)?;
                Out::Udp(sock)
            }
            StatsdAddr::Unix(path) => {
                let sock = UnixDatagram::unbound()?;
                sock.set_nonblocking(true)?;
                Out::Unix(sock, path.clone())
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let sender = Sender {
            rx,
            out,
            prefix: prefix(&cfg.prefix),
            tags: cfg.tags.clone(),
        };
        Ok((Statsd { tx }, sender))
    }

    fn send(&self, stat: Stat) {
        // Full (the collector is slow or gone): the stat is dropped, never waited for.
        let _ = self.tx.try_send(stat);
    }

    pub fn request(&self, status: u16, elapsed: Duration) {
        self.send(Stat::Request { status, elapsed });
    }

    /// `gunicorn.workers`.
    pub fn workers(&self, n: u64) {
        self.send(Stat::Gauge("gunicorn.workers", n));
    }

    /// `gunicorn.backlog`.
    pub fn backlog(&self, n: u64) {
        self.send(Stat::Histogram("gunicorn.backlog", n));
    }

    pub fn log(&self, kind: LogKind) {
        self.send(Stat::Count(match kind {
            LogKind::Critical => "gunicorn.log.critical",
            LogKind::Error => "gunicorn.log.error",
            LogKind::Warning => "gunicorn.log.warning",
            LogKind::Exception => "gunicorn.log.exception",
        }));
    }
}

/// gunicorn's prefix rule (`re.sub(r"^(.+[^.]+)\.*$", r"\g<1>.", prefix)`): trailing dots
/// become one, but a prefix of fewer than two characters before them is kept as given.
fn prefix(p: &str) -> String {
    let stem = p.trim_end_matches('.');
    if stem.chars().count() >= 2 {
        format!("{stem}.")
    } else {
        p.to_string()
    }
}

enum Out {
    Udp(std::net::UdpSocket),
    Unix(UnixDatagram, PathBuf),
}

impl Out {
    fn max(&self) -> usize {
        match self {
            Out::Udp(_) => UDP_DATAGRAM,
            Out::Unix(..) => UNIX_DATAGRAM,
        }
    }

    fn send(&self, datagram: &[u8]) {
        // Nobody listening, or the socket buffer is full: StatsD is best effort.
        let _ = match self {
            Out::Udp(s) => s.send(datagram),
            Out::Unix(s, path) => s.send_to(datagram, path),
        };
    }
}

/// The task that formats and sends what the clients queued.
pub struct Sender {
    rx: mpsc::Receiver<Stat>,
    out: Out,
    prefix: String,
    tags: String,
}

impl Sender {
    /// Sends until every client is gone.
    pub async fn run(mut self) {
        let max = self.out.max();
        let mut datagram = String::with_capacity(max);
        let mut lines = Vec::with_capacity(3);
        while let Some(first) = self.rx.recv().await {
            let mut next = Some(first);
            // Everything already queued goes out in as few datagrams as fit.
            while let Some(stat) = next {
                self.format(stat, &mut lines);
                for line in lines.drain(..) {
                    if !datagram.is_empty() && datagram.len() + 1 + line.len() > max {
                        self.out.send(datagram.as_bytes());
                        datagram.clear();
                    }
                    if !datagram.is_empty() {
                        datagram.push('\n');
                    }
                    datagram.push_str(&line);
                }
                next = self.rx.try_recv().ok();
            }
            if !datagram.is_empty() {
                self.out.send(datagram.as_bytes());
                datagram.clear();
            }
        }
    }

    fn format(&self, stat: Stat, lines: &mut Vec<String>) {
        let line = |name: &str, value: &str, kind: &str| {
            let mut l = format!("{}{name}:{value}|{kind}", self.prefix);
            if !self.tags.is_empty() {
                l.push_str("|#");
                l.push_str(&self.tags);
            }
            l
        };
        match stat {
            Stat::Request { status, elapsed } => {
                lines.push(line("gunicorn.request.duration", &millis(elapsed), "ms"));
                lines.push(line("gunicorn.requests", "1", "c|@1.0"));
                let name = format!("gunicorn.request.status.{status}");
                lines.push(line(&name, "1", "c|@1.0"));
            }
            Stat::Count(name) => lines.push(line(name, "1", "c|@1.0")),
            Stat::Gauge(name, v) => lines.push(line(name, &v.to_string(), "g")),
            Stat::Histogram(name, v) => lines.push(line(name, &v.to_string(), "h")),
        }
    }
}

/// Milliseconds as gunicorn writes them (a Python float of whole microseconds: `12.345`,
/// `2.0`).
fn millis(d: Duration) -> String {
    let us = d.as_micros();
    let mut s = format!("{}.{:03}", us / 1000, us % 1000);
    while s.ends_with('0') && !s.ends_with(".0") {
        s.pop();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_follow_gunicorn() {
        assert_eq!(prefix(""), "");
        assert_eq!(prefix("app"), "app.");
        assert_eq!(prefix("app."), "app.");
        assert_eq!(prefix("app..."), "app.");
        assert_eq!(prefix("my.app"), "my.app.");
        // gunicorn's pattern needs two characters before the dots.
        assert_eq!(prefix("a"), "a");
        assert_eq!(prefix("a."), "a.");
    }

    #[test]
    fn millis_look_like_python_floats() {
        assert_eq!(millis(Duration::from_micros(12_345)), "12.345");
        assert_eq!(millis(Duration::from_micros(2_000)), "2.0");
        assert_eq!(millis(Duration::from_micros(500)), "0.5");
        assert_eq!(millis(Duration::from_micros(1_000_010)), "1000.01");
    }

    #[tokio::test]
    async fn datagrams_carry_gunicorn_lines_with_prefix_and_tags() {
        let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = collector.local_addr().unwrap().port();
        let cfg = StatsdSettings {
            addr: StatsdAddr::Udp {
                host: "127.0.0.1".into(),
                port,
            },
            prefix: "shop".into(),
            tags: "env:test,canary".into(),
            backlog: false,
        };
        let (client, sender) = Statsd::connect(&cfg).unwrap();
        client.request(404, Duration::from_micros(1_500));
        client.workers(4);
        client.log(LogKind::Exception);
        drop(client);
        sender.run().await;
        let mut buf = [0u8; 2048];
        let n = collector.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(
            got.lines().collect::<Vec<_>>(),
            [
                "shop.gunicorn.request.duration:1.5|ms|#env:test,canary",
                "shop.gunicorn.requests:1|c|@1.0|#env:test,canary",
                "shop.gunicorn.request.status.404:1|c|@1.0|#env:test,canary",
                "shop.gunicorn.workers:4|g|#env:test,canary",
                "shop.gunicorn.log.exception:1|c|@1.0|#env:test,canary",
            ]
        );
    }
}
