//! The request body as `wsgi.input` pulls it: each call blocks the (detached) pool thread on
//! hyper's `Incoming` through the runtime handle. Nothing is read until the app asks, which is
//! when hyper answers `Expect: 100-continue`.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::runtime::Handle;

use super::guard::Notes;
use crate::wsgi::{BodyError, BodyReader};
use std::sync::Arc;

pub(super) struct IncomingReader {
    body: Incoming,
    runtime: Handle,
    /// Says whether a body error was the guard refusing the framing.
    notes: Arc<Notes>,
    /// Bytes the body may still bring (`--limit-request-body`); `None` for no limit.
    allowance: Option<u64>,
    limit: u64,
}

impl IncomingReader {
    pub(super) fn new(
        body: Incoming,
        runtime: Handle,
        notes: Arc<Notes>,
        limit: Option<u64>,
    ) -> IncomingReader {
        IncomingReader {
            body,
            runtime,
            notes,
            allowance: limit,
            limit: limit.unwrap_or(0),
        }
    }
}

impl BodyReader for IncomingReader {
    fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        loop {
            match self.runtime.block_on(self.body.frame()) {
                None => return Ok(None),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => {
                        // A chunked body has no length to check up front: count it as it comes.
                        if let Some(left) = self.allowance.as_mut() {
                            *left = left
                                .checked_sub(data.len() as u64)
                                .ok_or(BodyError::TooLarge(self.limit))?;
                        }
                        return Ok(Some(data));
                    }
                    Err(_trailers) => continue,
                },
                Some(Err(err)) => {
                    if let Some(reject) = self.notes.body_error() {
                        return Err(BodyError::Malformed(reject.to_string()));
                    }
                    // hyper's own framing errors carry an InvalidData/InvalidInput cause; an
                    // early end of the stream is the client going away.
                    let invalid = std::error::Error::source(&err)
                        .and_then(|s| s.downcast_ref::<std::io::Error>())
                        .is_some_and(|io| {
                            matches!(
                                io.kind(),
                                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
                            )
                        });
                    return Err(match invalid || err.is_parse() {
                        true => BodyError::Malformed(err.to_string()),
                        false => BodyError::Disconnected,
                    });
                }
            }
        }
    }
}
