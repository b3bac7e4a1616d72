//! Every way a request ends in an error page, each with its status in one match beside it.

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, SERVER};
use http::{Response, StatusCode};

use super::guard::Reject;
use super::response_body::ResponseBody;
use crate::static_files::StaticError;
use crate::wsgi::Failure;

/// A request the server answers itself.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The guard refused the request head before hyper parsed it.
    #[error(transparent)]
    Rejected(#[from] Reject),
    /// The app, or its request body, failed: see `wsgi::Failure`.
    #[error(transparent)]
    Wsgi(#[from] Failure),
    /// The pool stopped taking jobs (shutting down).
    #[error("the server is shutting down")]
    Unavailable,
    /// Every thread is busy and `--queue-size` requests already wait.
    #[error("every worker thread is busy and the queue is full")]
    Busy,
    /// No response head within `--timeout`.
    #[error("the application did not answer within the timeout")]
    Timeout,
    /// The pool thread holding the request went away without answering.
    #[error("the request was dropped by its worker")]
    WorkerLost,
    /// A request under a `--static` mount that gets no file: see `static_files::StaticError`.
    #[error(transparent)]
    Static(#[from] StaticError),
}

impl RequestError {
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::Rejected(r) => match r {
                Reject::BadRequest(_) | Reject::LineTooLong => StatusCode::BAD_REQUEST,
                Reject::FieldsTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                Reject::Version => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                Reject::TransferCoding => StatusCode::NOT_IMPLEMENTED,
                Reject::Expectation => StatusCode::EXPECTATION_FAILED,
                Reject::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            },
            RequestError::Wsgi(f) => {
                StatusCode::from_u16(f.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            RequestError::Unavailable | RequestError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            RequestError::WorkerLost => StatusCode::INTERNAL_SERVER_ERROR,
            RequestError::Static(e) => e.status(),
        }
    }

    /// Whether the connection must close after this answer: the request stream can no longer
    /// be trusted to be in step.
    fn closes(&self) -> bool {
        match self {
            RequestError::Rejected(_) | RequestError::Unavailable => true,
            RequestError::Wsgi(f) => matches!(
                f,
                Failure::BadBody(_)
                    | Failure::BadHeaders(_)
                    | Failure::BodyTooLarge
                    | Failure::BodyTimeout
            ),
            RequestError::WorkerLost
            | RequestError::Busy
            | RequestError::Timeout
            | RequestError::Static(_) => false,
        }
    }

    /// A small HTML page, as gunicorn sends.
    pub fn into_response(self) -> Response<ResponseBody> {
        let status = self.status();
        let reason = status.canonical_reason().unwrap_or("Error");
        let page = format!(
            "<html>\n  <head>\n    <title>{reason}</title>\n  </head>\n  <body>\n    <h1><p>{reason}</p></h1>\n  </body>\n</html>\n"
        );
        let len = page.len();
        let mut resp = Response::new(ResponseBody::full(Bytes::from(page)));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(SERVER, HeaderValue::from_static("ferrocorn"));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
        if matches!(self, RequestError::Busy) {
            // Clients and proxies that honour it come back instead of hammering a full queue.
            h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let RequestError::Static(e) = &self {
            e.add_headers(h);
        }
        if self.closes() {
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}
