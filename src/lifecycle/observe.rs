//! This process's part in the metrics, by role: every role opens its StatsD client before
//! logging starts (so error-log lines count from the first) and runs its sending task once the
//! runtime runs; the first process (single or supervisor) binds `--metrics-bind` and serves it
//! (a single process from its own registry, a supervisor from the sum of its workers'); a
//! process that serves requests keeps a registry when metrics are on.

use std::sync::Arc;

use crate::config::Settings;
use crate::error::StartupError;
use crate::metrics::endpoint::{self, Endpoint};
use crate::metrics::{statsd, Metrics, Source, Statsd, HEALTH};
use crate::server::{self, BindOptions, Bound};

pub(super) struct Observe {
    pub(super) statsd: Option<Statsd>,
    /// The StatsD sending task, until the runtime runs it.
    sender: Option<statsd::Sender>,
    /// `--metrics-bind`, bound and not yet served.
    listener: Option<Bound>,
    /// Why StatsD could not start, kept for the error log (which starts after the client).
    failed: Option<String>,
}

impl Observe {
    /// Opens the StatsD client (call before logging starts). A host that cannot be resolved
    /// leaves StatsD off with a warning, as gunicorn goes on without its socket.
    pub(super) fn new(settings: &Settings) -> Observe {
        let (statsd, sender, failed) = match &settings.metrics.statsd {
            None => (None, None, None),
            Some(cfg) => match Statsd::connect(cfg) {
                Ok((client, sender)) => {
                    statsd::install(&client);
                    (Some(client), Some(sender), None)
                }
                Err(err) => (None, None, Some(err)),
            },
        };
        Observe {
            statsd,
            sender,
            listener: None,
            failed: failed.map(|err| err.to_string()),
        }
    }

    /// Starts the StatsD task (call inside the runtime).
    pub(super) fn start(&mut self, runtime: &tokio::runtime::Runtime) {
        if let Some(err) = self.failed.take() {
            tracing::warn!("Cannot reach the StatsD host, sending no metrics: {err}");
        }
        if let Some(sender) = self.sender.take() {
            runtime.spawn(sender.run());
        }
    }

    /// Binds `--metrics-bind`, when set (the first process only).
    pub(super) fn bind(&mut self, settings: &Settings) -> Result<(), StartupError> {
        let Some(addr) = &settings.metrics.bind else {
            return Ok(());
        };
        let opts = BindOptions {
            backlog: 128,
            reuse_port: false,
            umask: settings.server.umask,
            retry: !settings.dev.preset,
        };
        let mut bound = server::bind_all(std::slice::from_ref(addr), opts)?;
        let b = bound.pop();
        if let Some(b) = &b {
            tracing::info!("Serving metrics at: {} ({})", b.url(), std::process::id());
        }
        self.listener = b;
        Ok(())
    }

    /// Serves what was bound from `source` (call inside the runtime).
    pub(super) fn serve(&mut self, source: Arc<dyn Source>) -> Result<(), StartupError> {
        let Some(listener) = self.listener.take() else {
            return Ok(());
        };
        endpoint::start(
            listener,
            Endpoint {
                source,
                health: &HEALTH,
            },
        )
        .map_err(|err| StartupError::Io {
            context: "Cannot serve --metrics-bind",
            err,
        })
    }

    /// A registry for this process's requests, when metrics are kept.
    pub(super) fn registry(&self, settings: &Settings) -> Option<Arc<Metrics>> {
        settings
            .metrics
            .enabled()
            .then(|| Arc::new(Metrics::new(self.statsd.clone())))
    }
}
