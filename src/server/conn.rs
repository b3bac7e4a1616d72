//! One connection once it is accepted (and any PROXY header read): the TLS handshake, the
//! choice of HTTP/1 or HTTP/2 (by ALPN, or by the cleartext preface from a trusted peer), and
//! serving it until it ends or the server stops. The choice is made once per connection: the
//! plain HTTP/1 path is the guard in front of hyper's HTTP/1 connection, as before, with no
//! per-request work added. HTTP/2 connections skip the HTTP/1 guard; hyper's HTTP/2 settings
//! and the service's HTTP/2 checks hold the same limits.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::accept::{finishing, Ctx};
use super::proxy_protocol::Rewind;
use super::Finish;
use crate::config::AllowList;
use crate::http::guard::Notes;
use crate::http::service::TlsPeer;
use crate::http::{AppService, ConnMeta, GuardedIo};

/// How long a client may take over its TLS handshake.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(10);

/// How long an idle HTTP/2 connection may take to close once told to.
const GOAWAY_WAIT: Duration = Duration::from_secs(5);

/// What a client with prior knowledge sends first (RFC 9113 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one connection; `replay` holds bytes already read from `stream`.
pub(super) async fn serve<S>(mut stream: S, mut replay: BytesMut, meta: ConnMeta, ctx: &Arc<Ctx>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if let Some(acceptor) = &ctx.tls {
        let handshake = acceptor.accept(Rewind::new(replay, stream));
        let tls = match tokio::time::timeout(HANDSHAKE_WAIT, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(err)) => {
                tracing::debug!(cause = %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return;
            }
        };
        let (_, session) = tls.get_ref();
        let h2 = session.alpn_protocol() == Some(b"h2".as_slice());
        let peer = TlsPeer {
            client_cert: session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| crate::tls::pem(cert)),
        };
        return match (&ctx.h2, h2) {
            (Some(builder), true) => http2(tls, &meta, Some(peer), ctx, builder).await,
            _ => http1(tls, &meta, Some(peer), ctx).await,
        };
    }
    if let (Some(allow), Some(builder)) = (&ctx.h2c, &ctx.h2) {
        if trusted(allow, &meta) && preface(&mut stream, &mut replay, ctx.idle).await {
            return http2(Rewind::new(replay, stream), &meta, None, ctx, builder).await;
        }
    }
    http1(Rewind::new(replay, stream), &meta, None, ctx).await
}

/// Whether this peer may speak cleartext HTTP/2: a `--forwarded-allow-ips` address, or any
/// Unix-socket peer (as gunicorn trusts them).
fn trusted(allow: &AllowList, meta: &ConnMeta) -> bool {
    match meta {
        ConnMeta::Tcp { peer, .. } => allow.allows(peer.ip()),
        ConnMeta::Unix { .. } => true,
    }
}

/// Reads until the bytes so far rule the HTTP/2 preface in or out (an HTTP/1 request differs
/// by its first bytes). A client that stalls or closes first is left to the HTTP/1 side.
async fn preface<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut, wait: Duration) -> bool {
    let read = async {
        loop {
            let n = buf.len().min(PREFACE.len());
            if buf[..n] != PREFACE[..n] {
                return false;
            }
            if n == PREFACE.len() {
                return true;
            }
            match stream.read_buf(buf).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(wait, read).await.unwrap_or(false)
}

/// HTTP/1.x: the guard in front of hyper. On a stop, every answer says `Connection: close`.
async fn http1<S>(stream: S, meta: &ConnMeta, tls: Option<TlsPeer>, ctx: &Arc<Ctx>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut stop = ctx.stop.clone();
    let notes = Arc::new(Notes::default());
    let service = AppService::new(ctx.shared.clone(), meta, tls, notes.clone());
    let io = GuardedIo::new(stream, ctx.limits, notes.clone(), ctx.send_timeout);
    let conn = ctx.http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        how = finishing(&mut stop) => {
            // Every answer from now on says `Connection: close`. A client that connected but
            // has not sent its request yet still gets its answer (hyper would close such a
            // connection as idle), and so, when the finish is polite, does an idle keep-alive
            // client's next request: nobody races the close. Both waits are bounded by the
            // header-read timeout.
            notes.close_after_response();
            if how == Finish::Prompt && notes.requests() > 0 {
                // Idle connections close now; a request in flight is answered first.
                conn.as_mut().graceful_shutdown();
            }
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(cause = %err, "connection ended with an error");
    }
}

/// HTTP/2: each stream is one request. A stop sends GOAWAY and lets the streams in flight
/// finish; so does a connection with no stream open for the keep-alive time.
async fn http2<S>(
    stream: S,
    meta: &ConnMeta,
    tls: Option<TlsPeer>,
    ctx: &Arc<Ctx>,
    builder: &hyper::server::conn::http2::Builder<TokioExecutor>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut stop = ctx.stop.clone();
    let activity = Arc::new(Activity::new());
    let service = Tracked {
        inner: AppService::new(ctx.shared.clone(), meta, tls, Arc::new(Notes::default()))
            .http2(ctx.limits),
        activity: activity.clone(),
    };
    let io = GuardedIo::unguarded(stream, ctx.send_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    // Told to stop, or no stream open for the keep-alive time.
    let ending = async {
        tokio::select! {
            _ = finishing(&mut stop) => {}
            () = activity.idle(ctx.idle) => {}
        }
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = ending => {
            conn.as_mut().graceful_shutdown();
            until_quiet(conn, &activity).await
        }
    };
    if let Err(err) = result {
        tracing::debug!(cause = %err, "HTTP/2 connection ended with an error");
    }
}

/// Runs a connection told to close (GOAWAY sent) while its streams finish. hyper then waits
/// for the client's answer to a PING before it closes; a client that never answers (gone
/// without a FIN) is given up on once no stream has been open for `GOAWAY_WAIT`, so it can
/// neither hold a stop for the whole graceful timeout nor cut a stream short.
async fn until_quiet<C>(conn: C, activity: &Activity) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    let quiet = async {
        tokio::time::sleep(GOAWAY_WAIT).await;
        activity.idle(GOAWAY_WAIT).await;
    };
    tokio::select! {
        r = conn => r,
        () = quiet => Ok(()),
    }
}

/// When an HTTP/2 connection last had a stream open: hyper keeps no idle timer for HTTP/2.
struct Activity {
    open: AtomicUsize,
    born: Instant,
    /// Milliseconds from `born` to when the last stream ended.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            open: AtomicUsize::new(0),
            born: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    /// Resolves once no stream has been open for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            if self.open.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(limit).await;
                continue;
            }
            let since = self.born + Duration::from_millis(self.last.load(Ordering::Acquire));
            let deadline = since + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// Held while a stream's request or response is under way.
struct Open(Arc<Activity>);

impl Open {
    fn new(activity: Arc<Activity>) -> Open {
        activity.open.fetch_add(1, Ordering::AcqRel);
        Open(activity)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let a = &self.0;
        let ms = u64::try_from(a.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.last.store(ms, Ordering::Release);
        a.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The service of an HTTP/2 connection: the app's, with each stream counted until its response
/// body is done.
#[derive(Clone)]
struct Tracked {
    inner: AppService,
    activity: Arc<Activity>,
}

type TrackedResponse = Response<TrackedBody<crate::http::MeteredBody>>;

impl Service<Request<Incoming>> for Tracked {
    type Response = TrackedResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<TrackedResponse, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let open = Open::new(self.activity.clone());
        let answer = self.inner.call(req);
        Box::pin(async move {
            let resp = answer.await?;
            Ok(resp.map(|body| TrackedBody { body, _open: open }))
        })
    }
}

/// A response body that keeps its stream counted as open until it is dropped.
struct TrackedBody<B> {
    body: B,
    _open: Open,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
