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
