//! The response body hyper writes: empty, one known buffer, or chunks arriving from the pool
//! thread. An `Abort` chunk becomes a body error, which makes hyper cut the connection instead
//! of ending the body cleanly.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::wsgi::BodyChunk;

/// The app failed mid-body.
#[derive(Debug, thiserror::Error)]
#[error("the application failed while sending the response body")]
pub struct Aborted;

pub enum ResponseBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<BodyChunk>),
    /// An abort is pending: hyper gets one `Pending` first, which makes it flush what it has
    /// buffered, so the client receives the head and the bytes sent before the failure.
    Aborting,
}

impl ResponseBody {
    pub fn full(b: Bytes) -> ResponseBody {
        ResponseBody::Full(Some(b))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        let this = self.get_mut();
        match this {
            ResponseBody::Full(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            ResponseBody::Stream(rx) => match rx.poll_recv(cx) {
                Poll::Ready(Some(BodyChunk::Data(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Poll::Ready(Some(BodyChunk::Abort)) => {
                    *this = ResponseBody::Aborting;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            ResponseBody::Aborting => Poll::Ready(Some(Err(Aborted))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ResponseBody::Full(b) if b.as_ref().is_none_or(Bytes::is_empty))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Stream(_) | ResponseBody::Aborting => SizeHint::default(),
        }
    }
}
