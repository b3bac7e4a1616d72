//! Turns process signals into a stop request. Handlers only record; `lifecycle` decides.

use tokio::signal::unix::{signal, SignalKind};

use crate::server::Stop;

/// Resolves on the first stop signal, logging it the way gunicorn does.
pub(super) async fn stop_requested() -> Stop {
    let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    let (name, how) = tokio::select! {
        _ = term.recv() => ("term", Stop::Graceful),
        _ = int.recv() => ("int", Stop::Quick),
        _ = quit.recv() => ("quit", Stop::Quick),
    };
    tracing::info!("Handling signal: {name}");
    how
}
