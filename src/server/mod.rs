//! Accepting connections and speaking HTTP/1.1 on them with hyper. `serve` takes bound
//! listeners, the shared service state and a stop signal, which is what tests drive too. Each
//! connection runs in its own task; on a graceful stop, idle keep-alive connections close at
//! once and busy ones finish their request, bounded by the graceful timeout. No Python here.

mod accept;
pub mod listener;
mod proxy_protocol;

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::http::guard::Limits;
use crate::http::Shared;
pub use listener::{bind_all, BindError, BindOptions, Bound, Kind};

/// How the server was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop accepting, let in-flight requests finish (SIGTERM).
    Graceful,
    /// Stop now (SIGINT, SIGQUIT).
    Quick,
}

/// Connection settings, resolved.
#[derive(Debug, Clone)]
pub struct ConnOptions {
    /// Idle time allowed between requests; `None` closes after each response.
    pub keepalive: Option<Duration>,
    pub graceful_timeout: Duration,
    /// Request-head limits the guard enforces on every connection.
    pub limits: Limits,
    /// The most connections open at once (`--worker-connections`).
    pub max_connections: usize,
    /// `--proxy-protocol`, when on.
    pub proxy_protocol: Option<crate::config::ProxyProtocol>,
    /// How long a client may leave a response unread before it is cut off (`--timeout`).
    pub send_timeout: Option<Duration>,
}

/// Serves until `stop` resolves. Returns whether every connection finished in time.
pub async fn serve(
    bound: Vec<Bound>,
    shared: Arc<Shared>,
    opts: ConnOptions,
    stop: impl std::future::Future<Output = Stop>,
) -> std::io::Result<bool> {
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper restarts the header-read timer whenever a connection goes idle, so it is also the
    // keep-alive timeout.
    http.timer(TokioTimer::new())
        .keep_alive(opts.keepalive.is_some())
        .header_read_timeout(opts.keepalive.unwrap_or(Duration::from_secs(30)))
        // A client may shut its write side after the request and still wait for the answer.
        .half_close(true);

    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a clone; when the last is dropped, the drain is over.
    let (drain_tx, mut drain_rx) = mpsc::channel::<()>(1);
    let ctx = Arc::new(accept::Ctx {
        http,
        shared,
        limits: opts.limits,
        permits: Arc::new(tokio::sync::Semaphore::new(opts.max_connections.max(1))),
        proxy_protocol: opts.proxy_protocol,
        send_timeout: opts.send_timeout,
        stop: stop_rx,
        drain: drain_tx,
    });
    let mut accepts = JoinSet::new();
    for b in bound {
        b.socket.set_nonblocking(true)?;
        match b.kind {
            Kind::Tcp(_) => {
                let l = TcpListener::from_std(std::net::TcpListener::from(b.socket))?;
                accepts.spawn(accept::run(l, ctx.clone()));
            }
            Kind::Unix(path) => {
                let l = UnixListener::from_std(std::os::unix::net::UnixListener::from(b.socket))?;
                accepts.spawn(accept::run(
                    accept::UnixBound(l, path.display().to_string()),
                    ctx.clone(),
                ));
            }
        }
    }

    let how = stop.await;
    let _ = stop_tx.send(true);
    while accepts.join_next().await.is_some() {}
    drop(ctx);
    Ok(match how {
        Stop::Quick => false,
        Stop::Graceful => tokio::time::timeout(opts.graceful_timeout, drain_rx.recv())
            .await
            .is_ok(),
    })
}
