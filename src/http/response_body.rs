//! The response body hyper writes: empty, one known buffer, chunks arriving from the pool
//! thread, or a file read block by block on the runtime's blocking threads (so a slow client
//! holds no pool thread). An `Abort` chunk, or a file that ends early, becomes a body error,
//! which makes hyper cut the connection instead of ending the body cleanly.

use std::pin::Pin;
use std::task::{Context, Poll};

use std::fs::File;
use std::future::Future;
use std::io::Read;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::wsgi::BodyChunk;

/// The app failed mid-body.
#[derive(Debug, thiserror::Error)]
#[error("the application failed while sending the response body")]
pub struct Aborted;

pub enum ResponseBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<BodyChunk>),
    File(FileBody),
    /// An abort is pending: hyper gets one `Pending` first, which makes it flush what it has
    /// buffered, so the client receives the head and the bytes sent before the failure.
    Aborting,
}

impl ResponseBody {
    pub fn full(b: Bytes) -> ResponseBody {
        ResponseBody::Full(Some(b))
    }

    pub fn file(file: File, len: u64) -> ResponseBody {
        ResponseBody::File(FileBody {
            file: Some(file),
            left: len,
            reading: None,
        })
    }
}

/// The size of the blocks a file is read in.
const FILE_BLOCK: usize = 256 * 1024;

/// `left` bytes of a file; one block read at a time on a blocking thread.
pub struct FileBody {
    /// `None` while a read holds it.
    file: Option<File>,
    left: u64,
    reading: Option<JoinHandle<(File, std::io::Result<Bytes>)>>,
}

impl FileBody {
    fn poll_block(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Aborted>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        if self.reading.is_none() {
            let Some(mut file) = self.file.take() else {
                return Poll::Ready(Some(Err(Aborted)));
            };
            let want = usize::try_from(self.left)
                .unwrap_or(FILE_BLOCK)
                .min(FILE_BLOCK);
            self.reading = Some(tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; want];
                let read = file.read(&mut buf).map(|n| {
                    buf.truncate(n);
                    Bytes::from(buf)
                });
                (file, read)
            }));
        }
        let Some(reading) = self.reading.as_mut() else {
            return Poll::Ready(Some(Err(Aborted)));
        };
        let (file, read) = match Pin::new(reading).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(done)) => done,
            Poll::Ready(Err(_)) => return Poll::Ready(Some(Err(Aborted))),
        };
        self.reading = None;
        self.file = Some(file);
        match read {
            // The file is shorter than promised (truncated meanwhile, or the app's
            // Content-Length was larger): the client must see the body fail, not end.
            Ok(block) if block.is_empty() => Poll::Ready(Some(Err(Aborted))),
            Ok(block) => {
                self.left -= block.len() as u64;
                Poll::Ready(Some(Ok(block)))
            }
            Err(err) => {
                tracing::error!("Error reading a file response: {err}");
                Poll::Ready(Some(Err(Aborted)))
            }
        }
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
            ResponseBody::File(f) => f
                .poll_block(cx)
                .map(|block| block.map(|b| b.map(Frame::data))),
            ResponseBody::Aborting => Poll::Ready(Some(Err(Aborted))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            ResponseBody::File(f) => f.left == 0,
            _ => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::File(f) => SizeHint::with_exact(f.left),
            ResponseBody::Stream(_) | ResponseBody::Aborting => SizeHint::default(),
        }
    }
}
