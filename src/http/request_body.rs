//! The request body as `wsgi.input` pulls it: each call blocks the (detached) pool thread on
//! hyper's `Incoming` through the runtime handle. A small body (up to `PREREAD` bytes) is read
//! on the connection before the request goes to the pool, so a client that trickles it holds
//! no pool thread meanwhile; the rest is read only when the app asks. A request that says
//! `Expect: 100-continue` is not read ahead: the app decides whether the client sends its body.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::runtime::Handle;

use super::guard::Notes;
use crate::metrics::Metrics;
use crate::pool::waiting_for_client;
use crate::wsgi::{BodyError, BodyReader};
use std::sync::Arc;

/// The most body bytes read before the request is handed to the pool.
pub(super) const PREREAD: u64 = 64 * 1024;

pub(super) struct IncomingReader {
    body: Incoming,
    /// What was read ahead, in order, and whether that was the whole body.
    ahead: std::collections::VecDeque<Result<Bytes, BodyError>>,
    ended: bool,
    runtime: Handle,
    /// Says whether a body error was the guard refusing the framing.
    notes: Arc<Notes>,
    /// Bytes the body may still bring (`--limit-request-body`); `None` for no limit.
    allowance: Option<u64>,
    limit: u64,
    /// How long the app waits for the next bytes (`--timeout`): a client that trickles a
    /// large upload cannot hold a pool thread past it.
    read_timeout: Option<std::time::Duration>,
    /// Counts the body bytes read, when metrics are kept.
    metrics: Option<Arc<Metrics>>,
}

impl IncomingReader {
    pub(super) fn new(
        body: Incoming,
        runtime: Handle,
        notes: Arc<Notes>,
        limit: Option<u64>,
        read_timeout: Option<std::time::Duration>,
    ) -> IncomingReader {
        IncomingReader {
            body,
            ahead: Default::default(),
            ended: false,
            runtime,
            notes,
            allowance: limit,
            limit: limit.unwrap_or(0),
            read_timeout,
            metrics: None,
        }
    }

    /// Counts the body bytes read in `metrics`.
    pub(super) fn counting(mut self, metrics: Option<Arc<Metrics>>) -> IncomingReader {
        self.metrics = metrics;
        self
    }

    fn read(&self, data: &Bytes) {
        if let Some(m) = &self.metrics {
            m.request_bytes(data.len());
        }
    }

    /// Reads up to `PREREAD` bytes of the body now, on the connection's task.
    pub(super) async fn read_ahead(&mut self) {
        let mut total = 0u64;
        while total < PREREAD {
            match self.body.frame().await {
                None => {
                    self.ended = true;
                    return;
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.read(&data);
                        total += data.len() as u64;
                        self.ahead.push_back(Ok(data));
                    }
                }
                Some(Err(err)) => {
                    let err = self.classify(&err);
                    self.ahead.push_back(Err(err));
                    self.ended = true;
                    return;
                }
            }
        }
    }

    /// Counts `data` against `--limit-request-body`.
    fn count(&mut self, data: Bytes) -> Result<Option<Bytes>, BodyError> {
        // A chunked body has no length to check up front: count it as it comes.
        if let Some(left) = self.allowance.as_mut() {
            *left = left
                .checked_sub(data.len() as u64)
                .ok_or(BodyError::TooLarge(self.limit))?;
        }
        Ok(Some(data))
    }

    fn classify(&self, err: &hyper::Error) -> BodyError {
        if let Some(reject) = self.notes.body_error() {
            return BodyError::Malformed(reject.to_string());
        }
        // hyper's own framing errors carry an InvalidData/InvalidInput cause; an early end of
        // the stream is the client going away.
        let invalid = std::error::Error::source(err)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
                )
            });
        match invalid || err.is_parse() {
            true => BodyError::Malformed(err.to_string()),
            false => BodyError::Disconnected,
        }
    }
}

impl BodyReader for IncomingReader {
    fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        if let Some(ahead) = self.ahead.pop_front() {
            return self.count(ahead?);
        }
        if self.ended {
            return Ok(None);
        }
        loop {
            let frame = match self.read_timeout {
                // The timer is made inside the runtime: this thread is not one of its own.
                // A client slow to send counts this thread out of the pool meanwhile (see
                // `pool::waiting_for_client`).
                Some(limit) => {
                    let (body, runtime) = (&mut self.body, &self.runtime);
                    waiting_for_client(|| {
                        runtime.block_on(async { tokio::time::timeout(limit, body.frame()).await })
                    })
                    .map_err(|_| BodyError::TimedOut(limit.as_secs()))?
                }
                None => {
                    let (body, runtime) = (&mut self.body, &self.runtime);
                    waiting_for_client(|| runtime.block_on(body.frame()))
                }
            };
            match frame {
                None => return Ok(None),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => {
                        self.read(&data);
                        return self.count(data);
                    }
                    Err(_trailers) => continue,
                },
                Some(Err(err)) => return Err(self.classify(&err)),
            }
        }
    }
}
