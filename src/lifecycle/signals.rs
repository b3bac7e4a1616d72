//! Turns process signals into events. Handlers only record (tokio's signal streams); the
//! lifecycle loop decides, with one `handle_<signal>` each. The handlers are installed before
//! the server says it is listening, so a supervisor that signals as soon as it reads
//! `Listening at:` is heard.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The signals gunicorn users send, by what they ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sig {
    /// Graceful stop.
    Term,
    /// Quick stop.
    Int,
    /// Quick stop.
    Quit,
    /// Reload code and configuration.
    Hup,
    /// Reopen log files.
    Usr1,
    /// Binary upgrade: start a new server on the same sockets.
    Usr2,
    /// One more thread (or process).
    Ttin,
    /// One thread (or process) fewer.
    Ttou,
    Winch,
}

impl Sig {
    pub(super) fn name(self) -> &'static str {
        match self {
            Sig::Term => "term",
            Sig::Int => "int",
            Sig::Quit => "quit",
            Sig::Hup => "hup",
            Sig::Usr1 => "usr1",
            Sig::Usr2 => "usr2",
            Sig::Ttin => "ttin",
            Sig::Ttou => "ttou",
            Sig::Winch => "winch",
        }
    }

    /// The signal to pass on to a worker process.
    pub(super) fn number(self) -> nix::sys::signal::Signal {
        use nix::sys::signal::Signal as S;
        match self {
            Sig::Term => S::SIGTERM,
            Sig::Int => S::SIGINT,
            Sig::Quit => S::SIGQUIT,
            Sig::Hup => S::SIGHUP,
            Sig::Usr1 => S::SIGUSR1,
            Sig::Usr2 => S::SIGUSR2,
            Sig::Ttin => S::SIGTTIN,
            Sig::Ttou => S::SIGTTOU,
            Sig::Winch => S::SIGWINCH,
        }
    }
}

const ALL: [Sig; 9] = [
    Sig::Term,
    Sig::Int,
    Sig::Quit,
    Sig::Hup,
    Sig::Usr1,
    Sig::Usr2,
    Sig::Ttin,
    Sig::Ttou,
    Sig::Winch,
];

/// Holds back (or lets through again) every signal the server handles, on the calling thread.
/// Across an exec the mask and pending signals are kept, so a signal that arrives while the
/// new image starts waits for its handlers instead of killing it.
pub(super) fn hold(held: bool) {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
    let mut set = SigSet::empty();
    for sig in ALL {
        set.add(sig.number());
    }
    let how = if held {
        SigmaskHow::SIG_BLOCK
    } else {
        SigmaskHow::SIG_UNBLOCK
    };
    if let Err(err) = pthread_sigmask(how, Some(&set), None) {
        tracing::debug!("cannot change the signal mask: {err}");
    }
}

pub(super) struct Signals {
    streams: Vec<(Sig, Signal)>,
}

impl Signals {
    /// Installs the handlers; call inside the runtime.
    pub(super) fn install() -> std::io::Result<Signals> {
        let kinds = [
            (Sig::Term, SignalKind::terminate()),
            (Sig::Int, SignalKind::interrupt()),
            (Sig::Quit, SignalKind::quit()),
            (Sig::Hup, SignalKind::hangup()),
            (Sig::Usr1, SignalKind::user_defined1()),
            (Sig::Usr2, SignalKind::user_defined2()),
            (Sig::Ttin, SignalKind::from_raw(nix::libc::SIGTTIN)),
            (Sig::Ttou, SignalKind::from_raw(nix::libc::SIGTTOU)),
            (Sig::Winch, SignalKind::window_change()),
        ];
        let streams = kinds
            .into_iter()
            .map(|(sig, kind)| Ok((sig, signal(kind)?)))
            .collect::<std::io::Result<_>>()?;
        Ok(Signals { streams })
    }

    /// Signals received and not yet handled, taken without waiting (before an exec, which
    /// would lose them).
    pub(super) fn take_pending(&mut self) -> Vec<Sig> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut pending = Vec::new();
        for (sig, stream) in &mut self.streams {
            if stream.poll_recv(&mut cx).is_ready() {
                pending.push(*sig);
            }
        }
        pending
    }

    /// The next signal, logged the way gunicorn does. Signals are taken in the order above
    /// when several are pending, so a stop is never delayed behind a reload.
    pub(super) async fn next(&mut self) -> Sig {
        let sig = std::future::poll_fn(|cx| {
            for (sig, stream) in &mut self.streams {
                if stream.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*sig);
                }
            }
            std::task::Poll::Pending
        })
        .await;
        tracing::info!("Handling signal: {}", sig.name());
        sig
    }
}
