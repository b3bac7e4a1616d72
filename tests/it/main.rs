//! One integration binary: the real server (`server::serve` + the pool + the WSGI driver) on
//! 127.0.0.1:0, an app written in Python inline, and raw bytes over a real socket.

mod support;

mod fuzz;
mod http1;
mod wsgi;
