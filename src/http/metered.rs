//! Counting each request for the metrics where its answer is known: a `Meter` starts when hyper
//! hands the service a request (in flight from then on) and ends when the response body has
//! been handed to hyper in full, or dropped (the client went away, or hyper needs no body): then
//! the status, the body bytes and the time since the request came in are recorded once. Static
//! files, errors the server answers itself (400, 503...) and the app's answers all pass here.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::response_body::{Aborted, ResponseBody};
use crate::metrics::Metrics;

/// One request on its way through the server.
pub(super) struct Meter {
    metrics: Arc<Metrics>,
    received: Instant,
    /// 0 until the response head is known.
    status: u16,
    bytes: u64,
}

impl Meter {
    pub(super) fn start(metrics: Arc<Metrics>) -> Meter {
        metrics.request_started();
        Meter {
            metrics,
            received: Instant::now(),
            status: 0,
            bytes: 0,
        }
    }

    /// The response head is ready with `status`.
    pub(super) fn answered(mut self, status: u16) -> Meter {
        self.status = status;
        self
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        match self.status {
            0 => self.metrics.request_abandoned(),
            status => self
                .metrics
                .request_done(status, self.bytes, self.received.elapsed()),
        }
    }
}

/// The response body with its request's meter; without metrics, only the body.
pub struct MeteredBody {
    inner: ResponseBody,
    meter: Option<Meter>,
}

impl MeteredBody {
    pub(super) fn new(inner: ResponseBody, meter: Option<Meter>) -> MeteredBody {
        MeteredBody { inner, meter }
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_frame(cx);
        if let Some(meter) = this.meter.as_mut() {
            match &poll {
                Poll::Ready(Some(Ok(frame))) => {
                    meter.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                // The body is over: the request counts now, not when hyper drops the body.
                Poll::Ready(_) => this.meter = None,
                Poll::Pending => {}
            }
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
