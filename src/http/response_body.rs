//! The response body hyper writes: empty, one known buffer, chunks arriving from the pool
//! thread, or a file read block by block by the connection itself (so a slow client holds no
//! pool thread). A block already in the page cache is copied on the connection's task; only one
//! that must come from the disk goes to the runtime's blocking threads. An `Abort` chunk, or a
//! file that ends early, becomes a body error, which makes hyper cut the connection instead of
//! ending the body cleanly.

use std::pin::Pin;
use std::task::{Context, Poll};

use std::fs::File;
use std::future::Future;
use std::io::Read;
use std::os::fd::AsRawFd;

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
            nowait: true,
        })
    }
}

/// The size of the blocks a file is read in.
const FILE_BLOCK: usize = 512 * 1024;

/// `left` bytes of a file, one block at a time: from the page cache on the connection's task,
/// or from the disk on a blocking thread.
pub struct FileBody {
    /// `None` while a read holds it.
    file: Option<File>,
    left: u64,
    reading: Option<JoinHandle<(File, std::io::Result<Bytes>)>>,
    /// Whether the file's filesystem may still answer a read from the page cache without
    /// blocking; cleared at the first refusal.
    nowait: bool,
}

impl FileBody {
    fn poll_block(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Aborted>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(self.left)
            .unwrap_or(FILE_BLOCK)
            .min(FILE_BLOCK);
        if self.reading.is_none() && self.nowait {
            if let Some(file) = &self.file {
                // Handing each block to a blocking thread costs two thread switches; a cached
                // block costs only its copy (a 10 MiB download is 40 blocks).
                match read_cached(file, want) {
                    NoWait::Read(block) => return Poll::Ready(Some(self.took(Ok(block)))),
                    NoWait::Failed(err) => return Poll::Ready(Some(self.took(Err(err)))),
                    NoWait::Missed => {}
                    NoWait::Unsupported => self.nowait = false,
                }
            }
        }
        if self.reading.is_none() {
            let Some(mut file) = self.file.take() else {
                return Poll::Ready(Some(Err(Aborted)));
            };
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
        Poll::Ready(Some(self.took(read)))
    }

    /// Counts a block read off the file, or turns a failed read into a body error.
    fn took(&mut self, read: std::io::Result<Bytes>) -> Result<Bytes, Aborted> {
        match read {
            // The file is shorter than promised (truncated meanwhile, or the app's
            // Content-Length was larger): the client must see the body fail, not end.
            Ok(block) if block.is_empty() => Err(Aborted),
            Ok(block) => {
                self.left -= block.len() as u64;
                Ok(block)
            }
            Err(err) => {
                tracing::error!("Error reading a file response: {err}");
                Err(Aborted)
            }
        }
    }
}

/// What a read that must not wait for the disk got.
enum NoWait {
    /// Bytes from the page cache (fewer than asked when only some were there); empty at the end
    /// of the file.
    Read(Bytes),
    /// None of the bytes are cached: a blocking thread must read them.
    Missed,
    /// The filesystem (or kernel) cannot read without waiting; do not ask again.
    Unsupported,
    Failed(std::io::Error),
}

/// Reads up to `want` bytes at the file's offset, only as far as the page cache has them
/// (`preadv2` with `RWF_NOWAIT`, Linux 4.14 and later).
#[allow(unsafe_code)]
fn read_cached(file: &File, want: usize) -> NoWait {
    let mut buf = Vec::<u8>::with_capacity(want);
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: want,
    };
    // SAFETY: the one iovec points at `want` bytes of `buf`'s capacity, which the kernel only
    // writes; offset -1 reads at the file's offset and advances it, like `read`.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
    let Ok(n) = usize::try_from(n) else {
        let err = std::io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) => NoWait::Missed,
            Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => NoWait::Unsupported,
            _ => NoWait::Failed(err),
        };
    };
    // SAFETY: the kernel wrote `n <= want` bytes at the start of the buffer.
    unsafe { buf.set_len(n.min(want)) };
    NoWait::Read(Bytes::from(buf))
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
