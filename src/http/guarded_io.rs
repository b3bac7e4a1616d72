//! The connection's byte stream with the `guard` in front of hyper's reads. Body data the
//! guard need not examine (a `Content-Length` body, a chunk's data) is read straight into
//! hyper's buffer; the rest passes through the guard. Writes pass straight through, but a
//! client that stops reading for `send_timeout` is cut off, so it cannot hold a response (and
//! the pool thread streaming it) forever. An HTTP/2 connection keeps the write timeout and the
//! lingering close but reads unguarded (`unguarded`): the guard knows HTTP/1 framing only.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::guard::{Guard, Limits, Notes, Verdict};

/// How much is read from the socket at a time. The buffer is per runtime thread, not per
/// connection, so an idle connection holds no read buffer.
const READ_SIZE: usize = 64 * 1024;

thread_local! {
    static SCRATCH: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; READ_SIZE].into_boxed_slice());
}

/// Reads from `inner` into this runtime thread's scratch buffer and hands what came to `f`.
fn read_scratch<S: AsyncRead + Unpin, T>(
    inner: &mut S,
    cx: &mut Context<'_>,
    f: impl FnOnce(&[u8]) -> T,
) -> Poll<io::Result<T>> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let mut rb = ReadBuf::new(&mut scratch[..]);
        ready!(Pin::new(inner).poll_read(cx, &mut rb))?;
        Poll::Ready(Ok(f(rb.filled())))
    })
}

/// Reads at most `max` bytes from `inner` into `buf`, without zeroing `buf` first (as
/// `tokio::io::Take` does); returns how many came, 0 at the end of the stream.
#[allow(unsafe_code)]
fn read_at_most<S: AsyncRead + Unpin>(
    inner: &mut S,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
    max: u64,
) -> Poll<io::Result<usize>> {
    let max = usize::try_from(max)
        .unwrap_or(usize::MAX)
        .min(buf.remaining());
    let mut part = buf.take(max);
    let start = part.filled().as_ptr();
    ready!(Pin::new(inner).poll_read(cx, &mut part))?;
    if part.filled().as_ptr() != start {
        return Poll::Ready(Err(io::Error::other("the reader swapped its buffer")));
    }
    let n = part.filled().len();
    // SAFETY: the reader filled, so initialized, the first `n` bytes of the part, which are
    // the first `n` unfilled bytes of `buf` (the same memory, checked above).
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Poll::Ready(Ok(n))
}

/// Checked bytes beyond this are not kept allocated once hyper has read them.
const KEEP_OUT_CAPACITY: usize = 8 * 1024;

pub struct GuardedIo<S> {
    inner: S,
    guard: Guard,
    notes: Arc<Notes>,
    /// Checked bytes hyper has not read yet.
    out: BytesMut,
    end: Option<Verdict>,
    /// How long a write may wait for the client; `None` forever.
    send_timeout: Option<Duration>,
    /// Runs while a write waits.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Set once our side is shut: what the client still sends is read and dropped until it
    /// closes too, or `LINGER` passes.
    lingering: Option<Linger>,
    /// Reads pass straight through (HTTP/2).
    bypass: bool,
}

/// A lingering close (RFC 9112 9.6): closing with the client's bytes unread makes the kernel
/// send a reset, which destroys the responses still on their way to it (say, the answers to the
/// requests pipelined before one that was refused).
struct Linger {
    deadline: Pin<Box<Sleep>>,
    drained: usize,
}

/// How long, and how much, a closing connection keeps reading.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 << 20;

impl<S> GuardedIo<S> {
    pub fn new(
        inner: S,
        limits: Limits,
        notes: Arc<Notes>,
        send_timeout: Option<Duration>,
    ) -> GuardedIo<S> {
        GuardedIo {
            inner,
            guard: Guard::new(limits),
            notes,
            out: BytesMut::new(),
            end: None,
            send_timeout,
            stalled: None,
            lingering: None,
            bypass: false,
        }
    }

    /// Reads pass straight through; for protocols the guard does not know (HTTP/2).
    pub fn unguarded(inner: S, send_timeout: Option<Duration>) -> GuardedIo<S> {
        let mut io = GuardedIo::new(
            inner,
            Limits::default(),
            Arc::new(Notes::default()),
            send_timeout,
        );
        io.bypass = true;
        io
    }

    /// Passes a write's outcome on, failing it once the client has not taken a byte for
    /// `send_timeout`.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let Some(limit) = self.send_timeout else {
            return poll;
        };
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading the response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.bypass {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                if this.out.is_empty() && this.out.capacity() > KEEP_OUT_CAPACITY {
                    this.out = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            match this.end {
                Some(Verdict::FailAfter) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "invalid request body framing",
                    )))
                }
                Some(_) => return Poll::Ready(Ok(())),
                None => {}
            }
            let opaque = this.guard.opaque();
            if opaque > 0 && buf.remaining() > 0 {
                // Body data the guard need not look at goes from the socket straight into
                // hyper's buffer: an upload is not copied twice more through the scratch.
                let n = ready!(read_at_most(&mut this.inner, cx, buf, opaque))?;
                match n {
                    0 => this.end = Some(Verdict::EndAfter),
                    n => this.guard.passed(n),
                }
                return Poll::Ready(Ok(()));
            }
            let (guard, out, notes) = (&mut this.guard, &mut this.out, &this.notes);
            this.end = ready!(read_scratch(&mut this.inner, cx, |data| match data {
                [] => Some(Verdict::EndAfter),
                data => match guard.push(data, out, notes) {
                    Verdict::Ok => None,
                    other => Some(other),
                },
            }))?;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, data);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.lingering.is_none() {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.lingering = Some(Linger {
                deadline: Box::pin(tokio::time::sleep(LINGER)),
                drained: 0,
            });
        }
        let Some(linger) = this.lingering.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        loop {
            if linger.deadline.as_mut().poll(cx).is_ready() || linger.drained > LINGER_BYTES {
                return Poll::Ready(Ok(()));
            }
            match read_scratch(&mut this.inner, cx, <[u8]>::len) {
                // The client closed too (or the connection failed): nothing left to protect.
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(n)) => linger.drained += n,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
