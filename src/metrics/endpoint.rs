//! The `--metrics-bind` listener: a small hyper server of its own in the same Tokio runtime,
//! apart from the app's listeners and never through the Python pool, so a saturated pool or a
//! full connection cap never delays a scrape or a probe. It answers `GET /metrics` (Prometheus
//! text), `GET /health` (liveness: `200 ok` while the process's server loop runs) and
//! `GET /ready` (readiness: `200` while the server accepts and serves, `503` while it starts or
//! drains); anything else is 404 (405 for another method on those paths).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

use super::{prometheus, Health, Readiness, Source};
use crate::server::{Accept, Bound, Kind, TcpBound, UnixBound};

/// What the endpoint answers from.
#[derive(Clone)]
pub struct Endpoint {
    pub source: Arc<dyn Source>,
    pub health: &'static Health,
}

/// Starts serving on `bound` (call inside the runtime); runs as long as the runtime does.
pub fn start(bound: Bound, endpoint: Endpoint) -> std::io::Result<()> {
    bound.socket.set_nonblocking(true)?;
    match bound.kind {
        Kind::Tcp(addr) => {
            let l = TcpListener::from_std(std::net::TcpListener::from(bound.socket))?;
            tokio::spawn(accept_forever(TcpBound(l, addr), endpoint));
        }
        Kind::Unix(path) => {
            let l = UnixListener::from_std(std::os::unix::net::UnixListener::from(bound.socket))?;
            tokio::spawn(accept_forever(UnixBound(l, path), endpoint));
        }
    }
    Ok(())
}

/// The server's own accept (TCP_NODELAY included), with no connection cap and no graceful
/// stop: a scrape is short, and the endpoint lives as long as the runtime.
async fn accept_forever<L: Accept>(listener: L, endpoint: Endpoint) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, endpoint.clone()));
            }
            Err(err) => backoff(err).await,
        }
    }
}

async fn backoff(err: std::io::Error) {
    tracing::error!("Error accepting a metrics connection: {err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn connection<S>(stream: S, endpoint: Endpoint)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let resp = answer(&endpoint, req.method(), req.uri().path());
        async move { Ok::<_, Infallible>(resp) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    if let Err(err) = http.serve_connection(TokioIo::new(stream), service).await {
        tracing::debug!(cause = %err, "metrics connection ended with an error");
    }
}

fn answer(endpoint: &Endpoint, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let known = matches!(path, "/metrics" | "/health" | "/ready");
    if !known {
        return text(StatusCode::NOT_FOUND, "not found\n", "text/plain");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut resp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n",
            "text/plain",
        );
        resp.headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match path {
        "/metrics" => {
            let body = prometheus::render(&endpoint.source.snapshot());
            text(StatusCode::OK, body, prometheus::CONTENT_TYPE)
        }
        "/health" => text(StatusCode::OK, "ok\n", "text/plain"),
        _ => match endpoint.health.get() {
            Readiness::Ready => text(StatusCode::OK, "ready\n", "text/plain"),
            Readiness::Starting => {
                text(StatusCode::SERVICE_UNAVAILABLE, "starting\n", "text/plain")
            }
            Readiness::Draining => {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n", "text/plain")
            }
        },
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>, kind: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(kind));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn paths_and_readiness() {
        static HEALTH: Health = Health(std::sync::atomic::AtomicU8::new(0));
        let endpoint = Endpoint {
            source: Arc::new(Metrics::new(None)),
            health: &HEALTH,
        };
        let status = |m: &Method, p: &str| answer(&endpoint, m, p).status();
        assert_eq!(status(&Method::GET, "/health"), StatusCode::OK);
        assert_eq!(
            status(&Method::GET, "/ready"),
            StatusCode::SERVICE_UNAVAILABLE
        );
        endpoint.health.set(Readiness::Ready);
        assert_eq!(status(&Method::GET, "/ready"), StatusCode::OK);
        endpoint.health.set(Readiness::Draining);
        assert_eq!(
            status(&Method::HEAD, "/ready"),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(&Method::GET, "/metrics"), StatusCode::OK);
        assert_eq!(
            status(&Method::POST, "/metrics"),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(status(&Method::GET, "/"), StatusCode::NOT_FOUND);
    }
}
