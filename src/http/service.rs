//! The hyper service for one connection: check the head, hand the request to the pool, and turn
//! the pool's answer into a hyper response whose body streams from the pool thread.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::ext::ReasonPhrase;
use tokio::runtime::Handle;

use super::error::RequestError;
use super::guard::Notes;
use super::request_body::IncomingReader;
use super::response_body::ResponseBody;
use crate::pool::{SubmitError, Submitter};
use crate::wsgi::{self, Answer, ConnInfo, HeadBody, Reply};

/// What every connection shares.
pub struct Shared {
    pub pool: Submitter<wsgi::Request>,
    pub runtime: Handle,
    /// `--timeout`: how long a request may wait for its response head.
    pub timeout: Option<std::time::Duration>,
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

/// The service hyper calls for each request on one connection.
#[derive(Clone)]
pub struct AppService {
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    notes: Arc<Notes>,
}

impl AppService {
    pub fn new(shared: Arc<Shared>, meta: &ConnMeta, notes: Arc<Notes>) -> AppService {
        let conn = match meta {
            ConnMeta::Tcp { peer, local } => ConnInfo {
                remote_addr: peer.ip().to_canonical().to_string(),
                remote_port: peer.port().to_string(),
                server_name: local.ip().to_canonical().to_string(),
                server_port: local.port().to_string(),
                url_scheme: "http",
            },
            ConnMeta::Unix { path } => ConnInfo {
                remote_addr: String::new(),
                remote_port: String::new(),
                server_name: path.clone(),
                server_port: String::new(),
                url_scheme: "http",
            },
        };
        AppService {
            shared,
            conn: Arc::new(conn),
            notes,
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for AppService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let note = self.notes.next_head();
        if let Some(reject) = note.reject {
            let resp = RequestError::from(reject).into_response();
            return Box::pin(async move { Ok(resp) });
        }
        let shared = self.shared.clone();
        let conn = self.conn.clone();
        let notes = self.notes.clone();
        Box::pin(async move {
            Ok(
                match handle(shared, conn, notes, note.raw_target, req).await {
                    Ok(resp) => resp,
                    Err(err) => err.into_response(),
                },
            )
        })
    }
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
    let (reply, head_rx) = Reply::channel();
    let job = wsgi::Request {
        parts,
        raw_target,
        body: Box::new(IncomingReader::new(body, shared.runtime.clone(), notes)),
        conn,
        reply,
        received,
    };
    shared.pool.submit(job).map_err(|e| match e {
        SubmitError::Full => RequestError::Busy,
        SubmitError::Closed => RequestError::Unavailable,
    })?;
    let answer = match shared.timeout {
        // Dropping the receiver also tells the app's thread nobody waits for its head.
        Some(limit) => tokio::time::timeout(limit, head_rx)
            .await
            .map_err(|_| RequestError::Timeout)?,
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
