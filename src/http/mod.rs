//! Protocol glue: the one module that knows both hyper and `wsgi`. `guard` checks the raw
//! request stream before hyper parses it; `service` turns a hyper request into a pool job and the answer back into a hyper response; `request_body` and
//! `response_body` adapt the bodies; `error` holds every request error with its status;
//! `worker` is the pool handler that runs the WSGI driver and writes the access log;
//! `static_reply` answers requests under `--static` mounts without the pool; `metered` counts
//! each request's answer for the metrics.

pub mod error;
pub mod guard;
mod guarded_io;
mod metered;
mod request_body;
mod response_body;
pub mod service;
mod static_reply;
pub mod worker;

pub use guarded_io::GuardedIo;
pub use metered::MeteredBody;
pub use service::{AppService, Budget, ConnMeta, Shared};
pub use static_reply::StaticSite;
pub use worker::WsgiWorker;
