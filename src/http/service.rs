//! The hyper service for one connection: check the head, hand the request to the pool, and turn
//! the pool's answer into a hyper response whose body streams from the pool thread.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::ext::ReasonPhrase;
use tokio::runtime::Handle;

use super::error::RequestError;
use super::guard::{Limits, Notes, Reject};
use super::metered::{Meter, MeteredBody};
use super::request_body::{IncomingReader, PREREAD};
use super::response_body::ResponseBody;
use super::static_reply::StaticSite;
use super::worker::{Job, Ticket};
use crate::metrics::Metrics;
use crate::pool::{SubmitError, Submitter};
use crate::wsgi::{self, Answer, ConnInfo, Failure, HeadBody, Reply};
use tokio::sync::oneshot;

/// What every connection shares.
pub struct Shared {
    pub pool: Submitter<Job>,
    pub runtime: Handle,
    /// `--timeout`: how long a request may wait for its response head.
    pub timeout: Option<std::time::Duration>,
    /// `--limit-request-body`: the largest request body accepted, in bytes.
    pub limit_request_body: Option<u64>,
    /// `--max-requests` of a worker process.
    pub budget: Option<Arc<Budget>>,
    /// `--static` mounts, answered without the pool (their requests do not spend `budget`:
    /// they run no Python); `None` when there are none.
    pub static_site: Option<Arc<StaticSite>>,
    /// What requests and connections are counted in; `None` without `--metrics-bind` and
    /// `--statsd-host`.
    pub metrics: Option<Arc<Metrics>>,
}

/// `--max-requests` for a whole process: counts requests down and says when they are spent,
/// so the process can ask for its replacement while it goes on serving.
#[derive(Debug)]
pub struct Budget {
    left: std::sync::atomic::AtomicU64,
    spent: tokio::sync::Notify,
}

impl Budget {
    pub fn new(requests: u64) -> Budget {
        Budget {
            left: std::sync::atomic::AtomicU64::new(requests.max(1)),
            spent: tokio::sync::Notify::new(),
        }
    }

    fn spend(&self) {
        if self.left.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) == 1 {
            // `notify_one` keeps the wake-up for a waiter that comes later.
            self.spent.notify_one();
        }
    }

    /// Resolves once the budget is spent.
    pub async fn spent(&self) {
        self.spent.notified().await;
    }
}

/// What the server layer knows about a connection, in plain types.
#[derive(Debug, Clone)]
pub enum ConnMeta {
    Tcp {
        peer: std::net::SocketAddr,
        local: std::net::SocketAddr,
    },
    Unix {
        path: String,
    },
}

/// What a TLS connection tells the app, once its handshake is done.
#[derive(Debug, Clone, Default)]
pub struct TlsPeer {
    /// The client's certificate (PEM), when it sent one.
    pub client_cert: Option<String>,
}

/// The service hyper calls for each request on one connection.
#[derive(Clone)]
pub struct AppService {
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    notes: Arc<Notes>,
    /// On an HTTP/2 connection, the request limits the HTTP/1 guard enforces elsewhere.
    h2: Option<Limits>,
    /// Counts the connection as open until the last clone of the service is dropped.
    _open: Option<Arc<OpenConnection>>,
}

/// A connection counted open in the metrics.
struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

impl AppService {
    pub fn new(
        shared: Arc<Shared>,
        meta: &ConnMeta,
        tls: Option<TlsPeer>,
        notes: Arc<Notes>,
    ) -> AppService {
        let url_scheme = match tls {
            Some(_) => "https",
            None => "http",
        };
        let client_cert = tls.and_then(|t| t.client_cert);
        let conn = match meta {
            ConnMeta::Tcp { peer, local } => ConnInfo::new(
                peer.ip().to_canonical().to_string(),
                peer.port().to_string(),
                local.ip().to_canonical().to_string(),
                local.port().to_string(),
                url_scheme,
                client_cert,
            ),
            ConnMeta::Unix { path } => ConnInfo::new(
                String::new(),
                String::new(),
                path.clone(),
                String::new(),
                url_scheme,
                client_cert,
            ),
        };
        let open = shared.metrics.clone().map(|m| {
            m.connection_opened();
            Arc::new(OpenConnection(m))
        });
        AppService {
            shared,
            conn: Arc::new(conn),
            notes,
            h2: None,
            _open: open,
        }
    }

    /// For an HTTP/2 connection: each request is checked against `limits` and given an
    /// HTTP/1-shaped head (`Host` from `:authority`, an origin-form target).
    pub fn http2(mut self, limits: Limits) -> AppService {
        self.h2 = Some(limits);
        self
    }
}

/// Checks an HTTP/2 request against gunicorn's request limits (hyper's HTTP/2 side enforces
/// the header-list size, the frame size and the stream count) and reshapes its head as the
/// rest of the server expects it: `:authority` becomes `Host` (it takes precedence, RFC 9113
/// 8.3.1, as in gunicorn) and the target its path and query.
fn http2_head(req: &mut Request<Incoming>, limits: &Limits) -> Result<(), Reject> {
    join_cookies(req.headers_mut());
    let target_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > limits.request_line {
        return Err(Reject::LineTooLong);
    }
    if req.headers().len() > limits.fields {
        return Err(Reject::FieldsTooLarge("too many header fields"));
    }
    // As on HTTP/1: name, ": ", value and CRLF.
    if req
        .headers()
        .iter()
        .any(|(n, v)| n.as_str().len() + v.len() + 4 > limits.field_size)
    {
        return Err(Reject::FieldsTooLarge("header field too long"));
    }
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    if let Some(authority) = authority {
        if let Ok(host) = http::HeaderValue::from_str(&authority) {
            req.headers_mut().insert(http::header::HOST, host);
        }
    }
    if let Some(pq) = req.uri().path_and_query().cloned() {
        *req.uri_mut() = http::Uri::from(pq);
    }
    Ok(())
}

/// HTTP/2 clients may send each cookie as its own `cookie` field (browsers do); RFC 9113 8.2.3
/// has them joined with "; " before an application sees them. Left apart, the environ would
/// join them with "," as for any repeated header, which no cookie parser reads.
fn join_cookies(headers: &mut http::HeaderMap) {
    let cookies = headers.get_all(http::header::COOKIE);
    if cookies.iter().nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for value in cookies {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    // Made of valid field values and "; ", so it is one too.
    if let Ok(value) = http::HeaderValue::from_bytes(&joined) {
        headers.insert(http::header::COOKIE, value);
    }
}

impl hyper::service::Service<Request<Incoming>> for AppService {
    type Response = Response<MeteredBody>;
    type Error = Infallible;
    type Future = Respond;

    fn call(&self, mut req: Request<Incoming>) -> Respond {
        let meter = self.shared.metrics.clone().map(Meter::start);
        let note = self.notes.next_head();
        let reject = match &self.h2 {
            Some(limits) => http2_head(&mut req, limits).err(),
            None => note.reject,
        };
        if let Some(reject) = reject {
            let resp = RequestError::from(reject).into_response();
            return Respond::new(async move { resp }, meter);
        }
        let static_hit = self.shared.static_site.as_ref().and_then(|site| {
            let hit = site.find(req.uri().path())?;
            Some((site.clone(), hit))
        });
        let shared = self.shared.clone();
        let conn = self.conn.clone();
        let notes = self.notes.clone();
        let answer = async move {
            let closing = notes.clone();
            let mut resp = match static_hit {
                Some((site, hit)) => site.answer(hit, conn, note.raw_target, req).await,
                None => match handle(shared, conn, notes, note.raw_target, req).await {
                    Ok(resp) => resp,
                    Err(err) => err.into_response(),
                },
            };
            // Decided when the head goes out, so a stop that comes while the app runs still
            // closes the connection after this answer rather than racing the client's next
            // request.
            if closing.closing() {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            resp
        };
        Respond::new(answer, meter)
    }
}

/// `resp` with its body carrying the request's meter (when counting).
fn metered(resp: Response<ResponseBody>, meter: Option<Meter>) -> Response<MeteredBody> {
    let status = resp.status().as_u16();
    resp.map(|body| MeteredBody::new(body, meter.map(|m| m.answered(status))))
}

/// The answer to one request. A panic while it is worked out is caught here and answered 500,
/// so a bug in request handling costs that request, not the connection or the runtime.
pub struct Respond {
    answer: Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send>>,
    /// Held here, not in `answer`, so that a caught panic's 500 is counted too.
    meter: Option<Meter>,
}

impl Respond {
    fn new(
        answer: impl Future<Output = Response<ResponseBody>> + Send + 'static,
        meter: Option<Meter>,
    ) -> Respond {
        Respond {
            answer: Box::pin(answer),
            meter,
        }
    }
}

impl Future for Respond {
    type Output = Result<Response<MeteredBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let answer = &mut this.answer;
        match std::panic::catch_unwind(AssertUnwindSafe(|| answer.as_mut().poll(cx))) {
            Ok(Poll::Ready(resp)) => Poll::Ready(Ok(metered(resp, this.meter.take()))),
            Ok(Poll::Pending) => Poll::Pending,
            // Never polled again: hyper takes the answer and drops the future.
            Err(_) => {
                tracing::error!("a panic while handling a request was caught; answering 500");
                let resp = RequestError::WorkerLost.into_response();
                Poll::Ready(Ok(metered(resp, this.meter.take())))
            }
        }
    }
}

/// Waits for the response head, answering 504 once the app has run `limit` without one. Time
/// spent waiting for a free thread does not count. Dropping the receiver also tells the app's
/// thread nobody waits for its head.
async fn answer_within(
    head_rx: oneshot::Receiver<Answer>,
    ticket: &Ticket,
    limit: std::time::Duration,
) -> Result<Result<Answer, oneshot::error::RecvError>, RequestError> {
    tokio::pin!(head_rx);
    loop {
        let deadline = ticket.started().unwrap_or_else(Instant::now) + limit;
        match tokio::time::timeout_at(deadline.into(), &mut head_rx).await {
            Ok(answer) => return Ok(answer),
            Err(_)
                if ticket
                    .started()
                    .is_some_and(|at| at + limit <= Instant::now()) =>
            {
                return Err(RequestError::Timeout)
            }
            Err(_) => {}
        }
    }
}

/// Whether to read the body before the app runs: there is one, it is small or chunked, and the
/// client does not wait for `100 Continue`.
fn read_ahead(parts: &http::request::Parts, hint: &hyper::body::SizeHint) -> bool {
    let expects = parts.headers.contains_key(http::header::EXPECT);
    let small_or_unknown = hint.upper().is_none_or(|n| n <= PREREAD);
    hint.upper() != Some(0) && small_or_unknown && !expects
}

async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    notes: Arc<Notes>,
    raw_target: Option<String>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, RequestError> {
    let received = Instant::now();
    let (parts, body) = req.into_parts();
    let body_hint = hyper::body::Body::size_hint(&body);
    if let Some(limit) = shared.limit_request_body {
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(RequestError::Wsgi(Failure::BodyTooLarge));
        }
    }
    let mut body = IncomingReader::new(
        body,
        shared.runtime.clone(),
        notes,
        shared.limit_request_body,
        shared.timeout,
    )
    .counting(shared.metrics.clone());
    if read_ahead(&parts, &body_hint) {
        body.read_ahead().await;
    }
    let (reply, head_rx) = Reply::channel();
    let ticket = Arc::new(Ticket::new(&parts, raw_target.as_deref()));
    let request = wsgi::Request {
        parts,
        raw_target,
        body: Box::new(body),
        conn,
        reply,
        received,
    };
    let job = Job {
        request,
        ticket: ticket.clone(),
    };
    if let Some(budget) = &shared.budget {
        budget.spend();
    }
    shared.pool.submit(job).map_err(|e| match e {
        SubmitError::Full => RequestError::Busy,
        SubmitError::Closed => RequestError::Unavailable,
    })?;
    let answer = match shared.timeout {
        Some(limit) => answer_within(head_rx, &ticket, limit).await?,
        None => head_rx.await,
    };
    let head = match answer {
        Ok(Answer::Head(head)) => head,
        Ok(Answer::Failed(failure)) => return Err(failure.into()),
        Err(_) => return Err(RequestError::WorkerLost),
    };
    let body = match head.body {
        HeadBody::Full(bytes) => ResponseBody::full(bytes),
        HeadBody::Stream(rx) => ResponseBody::Stream(rx),
        HeadBody::File { file, len } => ResponseBody::file(file, len),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = head.status;
    *resp.headers_mut() = head.headers;
    if let Some(reason) = head.reason {
        if let Ok(reason) = ReasonPhrase::try_from(reason) {
            resp.extensions_mut().insert(reason);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_answering_becomes_a_500() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let metrics = Arc::new(Metrics::new(None));
        let respond = Respond::new(
            async {
                if std::hint::black_box(true) {
                    panic!("a bug in request handling");
                }
                RequestError::Timeout.into_response()
            },
            Some(Meter::start(metrics.clone())),
        );
        let resp = rt.block_on(respond).unwrap();
        assert_eq!(resp.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        // Counted once the answer is done with, as any other.
        drop(resp);
        let counted = metrics.snapshot();
        assert_eq!(counted.status, [(500, 1)]);
        assert_eq!(counted.in_flight, 0);
    }

    #[tokio::test]
    async fn a_budget_says_once_it_is_spent() {
        let b = Budget::new(2);
        b.spend();
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), b.spent()).await;
        assert!(early.is_err(), "spent after one of two");
        b.spend();
        tokio::time::timeout(std::time::Duration::from_secs(1), b.spent())
            .await
            .expect("spent after two");
    }
}
