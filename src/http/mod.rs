//! Protocol glue: the one module that knows both hyper and `wsgi`. `service` turns a hyper
//! request into a pool job and the answer back into a hyper response; `request_body` and
//! `response_body` adapt the bodies; `error` holds every request error with its status;
//! `worker` is the pool handler that runs the WSGI driver and writes the access log.

pub mod error;
mod request_body;
mod response_body;
pub mod service;
pub mod worker;

pub use service::{AppService, ConnMeta, Shared};
pub use worker::WsgiWorker;
