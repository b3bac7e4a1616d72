//! Accept loops and connection tasks. One bad connection never stops a loop: accept errors are
//! logged and backed off (running out of descriptors is the usual one), and each connection's
//! errors stay in its task.

use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite};

use std::path::PathBuf;

use socket2::Socket;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::proxy_protocol::{self, Proxied};
use super::{Bound, Finish, Kind};
use crate::config::{AllowList, ProxyProtocol};
use crate::http::guard::Limits;
use crate::http::{ConnMeta, Shared};

/// What every accept loop and connection task shares.
pub(super) struct Ctx {
    pub http: hyper::server::conn::http1::Builder,
    /// HTTP/2 connections, when `h2` is in `--http-protocols`.
    pub h2: Option<hyper::server::conn::http2::Builder<hyper_util::rt::TokioExecutor>>,
    /// Every connection starts with a TLS handshake (`--certfile`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Peers that may open a cleartext connection with the HTTP/2 preface.
    pub h2c: Option<AllowList>,
    /// How long a connection may stay idle (the keep-alive, or the head wait without it).
    pub idle: Duration,
    pub shared: Arc<Shared>,
    pub limits: Limits,
    /// Says when and how connections should finish and close.
    pub stop: watch::Receiver<Finish>,
    /// Held by each connection task until it ends.
    pub drain: mpsc::Sender<()>,
    /// One permit per open connection (`--worker-connections`), shared by every listener.
    pub permits: Arc<Semaphore>,
    pub proxy_protocol: Option<ProxyProtocol>,
    /// How long a client may leave a response unread before it is cut off.
    pub send_timeout: Option<Duration>,
}

/// A listening socket of either kind, yielding streams and what the service must know of them.
pub(crate) trait Accept: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Stream, ConnMeta)>> + Send;
    /// The listener back as a plain socket, still open.
    fn into_bound(self) -> std::io::Result<Bound>;
}

/// A TCP listener and the address it is bound to.
pub(crate) struct TcpBound(pub TcpListener, pub std::net::SocketAddr);

impl Accept for TcpBound {
    type Stream = TcpStream;

    async fn accept(&self) -> std::io::Result<(TcpStream, ConnMeta)> {
        let (stream, peer) = self.0.accept().await?;
        Ok(tcp_meta(stream, peer))
    }

    fn into_bound(self) -> std::io::Result<Bound> {
        Ok(Bound {
            socket: Socket::from(self.0.into_std()?),
            kind: Kind::Tcp(self.1),
        })
    }
}

fn tcp_meta(stream: TcpStream, peer: std::net::SocketAddr) -> (TcpStream, ConnMeta) {
    // Responses are written whole; Nagle would only delay the last segment.
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    (stream, ConnMeta::Tcp { peer, local })
}

/// A Unix listener and the path it is bound to (`SERVER_NAME` for its requests).
pub(crate) struct UnixBound(pub UnixListener, pub PathBuf);

impl Accept for UnixBound {
    type Stream = UnixStream;

    async fn accept(&self) -> std::io::Result<(UnixStream, ConnMeta)> {
        let (stream, _) = self.0.accept().await?;
        Ok((stream, unix_meta(&self.1)))
    }

    fn into_bound(self) -> std::io::Result<Bound> {
        Ok(Bound {
            socket: Socket::from(self.0.into_std()?),
            kind: Kind::Unix(self.1),
        })
    }
}

fn unix_meta(path: &std::path::Path) -> ConnMeta {
    ConnMeta::Unix {
        path: path.display().to_string(),
    }
}

/// Accepts until told to stop, one task per connection, then hands the listener back. At the
/// connection cap it stops accepting until a connection ends: new clients wait in the listen
/// backlog instead of being refused.
pub(super) async fn run<L: Accept>(
    listener: L,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
) -> Option<Bound> {
    loop {
        let permit = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            p = ctx.permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, meta)) => {
                tokio::spawn(connection(stream, meta, ctx.clone(), Some(permit)));
            }
            Err(err) => backoff(err).await,
        }
    }
    // Only deregistering from the reactor can fail here; the socket is closed with it.
    listener
        .into_bound()
        .map_err(|err| tracing::error!("Cannot take a listener back from the runtime: {err}"))
        .ok()
}

/// Accepts every connection waiting in `b`'s listen backlog (without blocking) and serves each,
/// whatever the connection cap: their clients connected before the server stopped.
pub(super) fn take_backlog(b: &Bound, ctx: &Arc<Ctx>) {
    loop {
        let (socket, peer) = match b.socket.accept() {
            Ok(accepted) => accepted,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                tracing::debug!("taking the backlog: {err}");
                return;
            }
        };
        if socket.set_nonblocking(true).is_err() {
            continue;
        }
        match &b.kind {
            Kind::Tcp(_) => {
                let Some(peer) = peer.as_socket() else {
                    continue;
                };
                if let Ok(stream) = TcpStream::from_std(socket.into()) {
                    let (stream, meta) = tcp_meta(stream, peer);
                    tokio::spawn(connection(stream, meta, ctx.clone(), None));
                }
            }
            Kind::Unix(path) => {
                if let Ok(stream) = UnixStream::from_std(socket.into()) {
                    tokio::spawn(connection(stream, unix_meta(path), ctx.clone(), None));
                }
            }
        }
    }
}

/// How long a proxy may take to send its PROXY header.
const PROXY_HEADER_WAIT: Duration = Duration::from_secs(10);

/// The answer to a malformed PROXY header; the connection closes after it.
const PROXY_REFUSED: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// Whether this peer may send a PROXY header: `--proxy-allow-from`, or any Unix-socket peer.
fn proxy_allowed(pp: &ProxyProtocol, meta: &ConnMeta) -> bool {
    match meta {
        ConnMeta::Tcp { peer, .. } => pp.allow.allows(peer.ip()),
        ConnMeta::Unix { .. } => true,
    }
}

/// Resolves once the server stops (at once if it already has).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Resolves with how connections are to finish, once they are.
pub(super) async fn finishing(stop: &mut watch::Receiver<Finish>) -> Finish {
    let stopping = stop.wait_for(|f| *f != Finish::No).await.is_ok();
    if !stopping {
        std::future::pending::<()>().await;
    }
    *stop.borrow()
}

async fn backoff(err: std::io::Error) {
    tracing::error!("Error accepting a connection: {err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn connection<S>(
    mut stream: S,
    mut meta: ConnMeta,
    ctx: Arc<Ctx>,
    _permit: Option<OwnedSemaphorePermit>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _drain = ctx.drain.clone();
    let replay = match &ctx.proxy_protocol {
        Some(pp) if proxy_allowed(pp, &meta) => {
            let read = proxy_protocol::read_header(&mut stream, pp.mode);
            match tokio::time::timeout(PROXY_HEADER_WAIT, read).await {
                Ok(Ok((proxied, rest))) => {
                    if let Some(Proxied::Addresses {
                        source,
                        destination,
                    }) = proxied
                    {
                        // As gunicorn: the client changes, the server stays the socket's
                        // own address (a Unix socket has none, so the proxy's is used).
                        let local = match meta {
                            ConnMeta::Tcp { local, .. } => local,
                            ConnMeta::Unix { .. } => destination,
                        };
                        meta = ConnMeta::Tcp {
                            peer: source,
                            local,
                        };
                    }
                    rest
                }
                Ok(Err(err)) => {
                    tracing::debug!("{err}");
                    let _ = stream.write_all(PROXY_REFUSED).await;
                    return;
                }
                Err(_) => return,
            }
        }
        _ => BytesMut::new(),
    };
    super::conn::serve(stream, replay, meta, &ctx).await;
}
