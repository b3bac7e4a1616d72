//! The request body as `wsgi.input` pulls it: each call blocks the (detached) pool thread on
//! hyper's `Incoming` through the runtime handle. Nothing is read until the app asks, which is
//! when hyper answers `Expect: 100-continue`.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::runtime::Handle;

use crate::wsgi::{BodyError, BodyReader};

pub(super) struct IncomingReader {
    body: Incoming,
    runtime: Handle,
}

impl IncomingReader {
    pub(super) fn new(body: Incoming, runtime: Handle) -> IncomingReader {
        IncomingReader { body, runtime }
    }
}

impl BodyReader for IncomingReader {
    fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        loop {
            match self.runtime.block_on(self.body.frame()) {
                None => return Ok(None),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => return Ok(Some(data)),
                    Err(_trailers) => continue,
                },
                Some(Err(err)) if err.is_parse() || err.is_user() => {
                    return Err(BodyError::Malformed(err.to_string()))
                }
                Some(Err(err))
                    if err.is_incomplete_message() || err.is_closed() || err.is_canceled() =>
                {
                    return Err(BodyError::Disconnected)
                }
                Some(Err(err)) => return Err(BodyError::Malformed(err.to_string())),
            }
        }
    }
}
