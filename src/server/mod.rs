//! Accepting connections and speaking HTTP on them with hyper. `serve` takes bound listeners,
//! the shared service state and a stop signal, which is what tests drive too. Each connection
//! runs in its own task (`conn`: the TLS handshake, then HTTP/1.x or HTTP/2); on a graceful
//! stop, idle keep-alive connections close at once and busy ones finish their request (HTTP/2
//! ones get GOAWAY and finish their streams), bounded by the graceful timeout. No Python here.

mod accept;
mod conn;
pub mod listener;
mod proxy_protocol;

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::http::guard::Limits;
use crate::http::Shared;
pub(crate) use accept::{Accept, TcpBound, UnixBound};
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
    /// TLS on every listener (`--certfile`), already loaded.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// HTTP/2 (`h2` in `--http-protocols`).
    pub http2: Option<crate::config::tls::Http2Settings>,
    /// Peers trusted to speak cleartext HTTP/2 (`--forwarded-allow-ips`).
    pub h2c_allow: crate::config::AllowList,
}

/// A server accepting connections on its listeners.
pub struct Running {
    /// Turns `true` to stop the accept loops (each hands its listener back).
    accept_stop: watch::Sender<bool>,
    accepts: JoinSet<Option<Bound>>,
    /// For connections taken from the backlog once accepting has stopped.
    ctx: Option<Arc<accept::Ctx>>,
    /// Says when and how connections should finish their request and close.
    conn_stop: watch::Sender<Finish>,
    /// Ends (`None`) when the last connection task has ended.
    drain: mpsc::Receiver<()>,
}

/// How open connections finish when the server stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Not yet.
    No,
    /// Idle keep-alive connections close at once (SIGTERM).
    Prompt,
    /// Each connection answers one more request, with `Connection: close`, before closing, so
    /// a keep-alive client never races the close (a reload or recycle: another process is
    /// already accepting).
    Polite,
}

/// What to do with connections that wait in the listen backlog when accepting stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backlog {
    /// Accept and serve them: the server is stopping and its clients are owed an answer.
    Serve,
    /// Leave them to whoever else accepts on the same sockets (a new generation).
    Leave,
}

/// Starts accepting on `bound`; call inside the runtime.
pub fn start(
    bound: Vec<Bound>,
    shared: Arc<Shared>,
    opts: ConnOptions,
) -> std::io::Result<Running> {
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper restarts the header-read timer whenever a connection goes idle, so it is also the
    // keep-alive timeout.
    http.timer(TokioTimer::new())
        .keep_alive(opts.keepalive.is_some())
        .header_read_timeout(opts.keepalive.unwrap_or(Duration::from_secs(30)))
        // A client may shut its write side after the request and still wait for the answer.
        .half_close(true);

    let idle = opts.keepalive.unwrap_or(Duration::from_secs(30));
    let h2 = opts.http2.map(|h2| {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(h2.max_concurrent_streams)
            .initial_stream_window_size(h2.initial_window_size)
            .initial_connection_window_size(h2.initial_window_size)
            .max_frame_size(h2.max_frame_size)
            .max_header_list_size(h2.max_header_list_size);
        b
    });
    let h2c = opts
        .http2
        .filter(|h2| h2.cleartext && opts.tls.is_none())
        .map(|_| opts.h2c_allow.clone());

    let (accept_stop, accept_rx) = watch::channel(false);
    let (conn_stop, conn_rx) = watch::channel(Finish::No);
    // Every connection task holds a clone; when the last is dropped, the drain is over.
    let (drain_tx, drain) = mpsc::channel::<()>(1);
    let ctx = Arc::new(accept::Ctx {
        http,
        h2,
        tls: opts.tls.map(tokio_rustls::TlsAcceptor::from),
        h2c,
        idle,
        shared,
        limits: opts.limits,
        permits: Arc::new(tokio::sync::Semaphore::new(opts.max_connections.max(1))),
        proxy_protocol: opts.proxy_protocol,
        send_timeout: opts.send_timeout,
        stop: conn_rx,
        drain: drain_tx,
    });
    let mut accepts = JoinSet::new();
    for b in bound {
        b.socket.set_nonblocking(true)?;
        match b.kind {
            Kind::Tcp(addr) => {
                let l = TcpListener::from_std(std::net::TcpListener::from(b.socket))?;
                accepts.spawn(accept::run(
                    accept::TcpBound(l, addr),
                    ctx.clone(),
                    accept_rx.clone(),
                ));
            }
            Kind::Unix(path) => {
                let l = UnixListener::from_std(std::os::unix::net::UnixListener::from(b.socket))?;
                accepts.spawn(accept::run(
                    accept::UnixBound(l, path),
                    ctx.clone(),
                    accept_rx.clone(),
                ));
            }
        }
    }
    Ok(Running {
        accept_stop,
        accepts,
        ctx: Some(ctx),
        conn_stop,
        drain,
    })
}

impl Running {
    /// Stops accepting and hands the listeners back, still open. With `Backlog::Serve`, the
    /// connections already waiting in each listen backlog are accepted first (a client that
    /// connected before the stop gets its answer instead of a reset).
    pub async fn stop_accepting(&mut self, backlog: Backlog) -> Vec<Bound> {
        let _ = self.accept_stop.send(true);
        let mut bound = Vec::new();
        while let Some(joined) = self.accepts.join_next().await {
            match joined {
                Ok(b) => bound.extend(b),
                Err(err) => tracing::error!("an accept loop failed: {err}"),
            }
        }
        if let (Backlog::Serve, Some(ctx)) = (backlog, &self.ctx) {
            for b in &bound {
                accept::take_backlog(b, ctx);
            }
        }
        bound
    }

    /// Tells every connection to finish: one with a request in flight answers it (with
    /// `Connection: close`) and closes, one that has not sent its request yet gets to send it
    /// first; idle keep-alive ones close at once or, with `Finish::Polite`, after one more.
    pub fn finish_connections(&mut self, how: Finish) {
        self.ctx = None;
        let _ = self.conn_stop.send(how);
    }

    /// Resolves once every connection has ended (call `finish_connections` first).
    pub async fn drained(&mut self) {
        while self.drain.recv().await.is_some() {}
    }
}

/// Serves until `stop` resolves, then stops as asked. Returns whether every connection
/// finished in time. (The lifecycle drives `Running` itself; this is the whole life in one
/// call, for tests.)
pub async fn serve(
    bound: Vec<Bound>,
    shared: Arc<Shared>,
    opts: ConnOptions,
    stop: impl std::future::Future<Output = Stop>,
) -> std::io::Result<bool> {
    let graceful_timeout = opts.graceful_timeout;
    let mut running = start(bound, shared, opts)?;
    let how = stop.await;
    drop(running.stop_accepting(Backlog::Serve).await);
    running.finish_connections(Finish::Prompt);
    Ok(match how {
        Stop::Quick => false,
        Stop::Graceful => tokio::time::timeout(graceful_timeout, running.drained())
            .await
            .is_ok(),
    })
}
