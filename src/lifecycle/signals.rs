//! Turns process signals into a stop request. Handlers only record; `lifecycle` decides. The
//! handlers are installed before the server says it is listening, so a supervisor that signals
//! as soon as it reads `Listening at:` is heard.

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::server::Stop;

pub(super) struct Signals {
    term: Signal,
    int: Signal,
    quit: Signal,
}

impl Signals {
    /// Installs the handlers; call inside the runtime.
    pub(super) fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// Resolves on the first stop signal, logging it the way gunicorn does.
    pub(super) async fn stop_requested(mut self) -> Stop {
        let (name, how) = tokio::select! {
            _ = self.term.recv() => ("term", Stop::Graceful),
            _ = self.int.recv() => ("int", Stop::Quick),
            _ = self.quit.recv() => ("quit", Stop::Quick),
        };
        tracing::info!("Handling signal: {name}");
        how
    }
}
