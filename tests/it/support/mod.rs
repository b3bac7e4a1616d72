//! `serve(app)` starts the server in-process on port 0 and returns a handle that stops it;
//! `exchange` sends raw bytes and reads until the server closes or goes quiet.

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use _ferrocorn::config::{self, BindAddr};
use _ferrocorn::http::{Shared, WsgiWorker};
use _ferrocorn::pool::{Pool, PoolOptions};
use _ferrocorn::server::{self, ConnOptions, Kind, Stop};
use _ferrocorn::wsgi::{HeaderPolicy, Statics};
use pyo3::prelude::*;
use pyo3::types::PyModule;

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<Stop>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(Stop::Quick);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `app` (the module-level name `app` in `source`) with a pool of `threads`.
pub(crate) fn serve(source: &str, threads: usize) -> Server {
    let (app, statics) = Python::attach(|py| {
        // A module name of its own per server: Python would otherwise re-run the code in the
        // module already registered under that name, and parallel tests would share its state.
        static SERVED: AtomicUsize = AtomicUsize::new(0);
        let name = format!("testapp{}", SERVED.fetch_add(1, Ordering::Relaxed));
        let code = CString::new(source).unwrap();
        let file = CString::new(format!("{name}.py")).unwrap();
        let name = CString::new(name).unwrap();
        let module = PyModule::from_code(py, &code, &file, &name).unwrap();
        let app = module.getattr("app").unwrap().unbind();
        // gunicorn's default header policy, as the settings table resolves it.
        let argv = vec!["ferrocorn".to_string(), "app".to_string()];
        let settings = config::load(py, argv, &config::Env::default()).unwrap();
        let policy = HeaderPolicy::new(&settings.server.proxy);
        let statics = Statics::new(py, "", threads > 1, false, Default::default(), policy).unwrap();
        (app, statics)
    });
    let bound = server::bind_all(
        &[BindAddr::parse("127.0.0.1:0").unwrap()],
        Default::default(),
    )
    .unwrap();
    let Kind::Tcp(addr) = bound[0].kind.clone() else {
        panic!("tcp")
    };
    let opts = PoolOptions {
        size: threads,
        queue_limit: None,
        timeout: None,
        grace: Duration::from_secs(5),
        max_waiting: 100,
        recycle: None,
    };
    let pool = Pool::start(opts, Arc::new(WsgiWorker::new(app, statics, None))).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<Stop>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let shared = Arc::new(Shared {
            pool: pool.submitter(),
            runtime: rt.handle().clone(),
            timeout: None,
            limit_request_body: None,
            budget: None,
            static_site: None,
            metrics: None,
        });
        let opts = ConnOptions {
            keepalive: Some(Duration::from_secs(2)),
            graceful_timeout: Duration::from_secs(5),
            limits: Default::default(),
            max_connections: 1000,
            proxy_protocol: None,
            send_timeout: None,
            tls: None,
            http2: None,
            h2c_allow: config::AllowList::parse("127.0.0.1"),
        };
        rt.block_on(server::serve(bound, shared, opts, async {
            rx.await.unwrap_or(Stop::Quick)
        }))
        .unwrap();
        rt.shutdown_timeout(Duration::from_millis(100));
        pool.shutdown(Duration::from_secs(5));
    });
    Server {
        addr,
        stop: Some(tx),
        thread: Some(thread),
    }
}

/// Sends `request` on a fresh connection and returns everything received until the server
/// closes the connection or sends nothing for `quiet`.
pub(crate) fn exchange(addr: SocketAddr, request: &[u8], quiet: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Counts the responses in a stream of HTTP/1.1 responses by their status lines.
pub(crate) fn statuses(raw: &str) -> Vec<u16> {
    raw.match_indices("HTTP/1.")
        .filter_map(|(i, _)| raw.get(i + 9..i + 12)?.parse().ok())
        .collect()
}
