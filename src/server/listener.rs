//! Opening the sockets named by `--bind`: TCP (names resolved, `SO_REUSEADDR`, the configured
//! backlog), Unix sockets (a stale socket file is replaced), and inherited descriptors
//! (`fd://N`). A busy address is retried like gunicorn does before giving up.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::stat::{umask, Mode};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::BindAddr;

/// How many times a busy address is tried, a second apart (gunicorn's five).
const BIND_ATTEMPTS: u32 = 5;

/// A bound, listening socket, not yet handed to the runtime.
#[derive(Debug)]
pub struct Bound {
    pub socket: Socket,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Bound {
    /// `http://127.0.0.1:8000` or `unix:/run/app.sock`, as the `Listening at:` line shows it.
    pub fn url(&self) -> String {
        self.url_with("http")
    }

    /// The same with `scheme` for a TCP listener (`https` with TLS, as gunicorn logs it).
    pub fn url_with(&self, scheme: &str) -> String {
        match &self.kind {
            Kind::Tcp(addr) => format!("{scheme}://{addr}"),
            Kind::Unix(path) => format!("unix:{}", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("Connection in use: {0}")]
    InUse(BindAddr),
    #[error("Port {port} is in use{}: pass --bind to use another.",
            owner.map(|pid| format!(" (by pid {pid})")).unwrap_or_default())]
    PortInUse { port: u16, owner: Option<u32> },
    #[error("Can't connect to {addr}: {err}")]
    Io { addr: BindAddr, err: io::Error },
    #[error("Can't resolve {0}")]
    Resolve(BindAddr),
}

/// How sockets are bound.
#[derive(Debug, Clone, Copy)]
pub struct BindOptions {
    /// The listen queue length. Default is 2048.
    pub backlog: u32,
    /// Set `SO_REUSEPORT` on TCP sockets (`--reuse-port`).
    pub reuse_port: bool,
    /// The umask a Unix socket file is created under (`--umask`; gunicorn's default 0 makes it
    /// `rwxrwxrwx`).
    pub umask: u32,
    /// Retry a busy address for a few seconds, as gunicorn does (a restart racing the old
    /// server); `--dev` reports it at once.
    pub retry: bool,
}

impl Default for BindOptions {
    fn default() -> BindOptions {
        BindOptions {
            backlog: 2048,
            reuse_port: false,
            umask: 0,
            retry: true,
        }
    }
}

/// Binds every address, retrying busy ones.
pub fn bind_all(addrs: &[BindAddr], opts: BindOptions) -> Result<Vec<Bound>, BindError> {
    addrs.iter().map(|a| bind_with_retry(a, opts)).collect()
}

fn bind_with_retry(addr: &BindAddr, opts: BindOptions) -> Result<Bound, BindError> {
    let attempts = if opts.retry { BIND_ATTEMPTS } else { 1 };
    for attempt in 1..=attempts {
        match bind(addr, opts) {
            Err(BindError::InUse(_)) if attempt < attempts => {
                tracing::error!("Connection in use: {addr}");
                tracing::error!("Retrying in 1 second.");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(BindError::InUse(_)) => return Err(in_use(addr)),
            other => return other,
        }
    }
    Err(in_use(addr))
}

/// The error for a busy address, naming the process that listens on a busy port when this
/// process may see it.
fn in_use(addr: &BindAddr) -> BindError {
    match addr {
        BindAddr::Tcp { port, .. } => BindError::PortInUse {
            port: *port,
            owner: port_owner(*port),
        },
        _ => BindError::InUse(addr.clone()),
    }
}

/// The pid listening on TCP `port`, from `/proc` (Linux; `None` elsewhere or when the
/// process belongs to another user).
fn port_owner(port: u16) -> Option<u32> {
    let hex_port = format!(":{port:04X}");
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    // local_address, state (0A = LISTEN), inode.
                    let listening = fields.get(3) == Some(&"0A");
                    let local = fields.get(1)?;
                    (listening && local.ends_with(&hex_port))
                        .then(|| fields.get(9).map(|i| i.to_string()))?
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|link| wanted.iter().any(|w| link.as_os_str() == w.as_str()))
                .then_some(pid)
        })
}

fn bind(addr: &BindAddr, opts: BindOptions) -> Result<Bound, BindError> {
    let io_err = |err: io::Error| match err.kind() {
        io::ErrorKind::AddrInUse => BindError::InUse(addr.clone()),
        _ => BindError::Io {
            addr: addr.clone(),
            err,
        },
    };
    let backlog = i32::try_from(opts.backlog).unwrap_or(i32::MAX);
    match addr {
        BindAddr::Tcp { host, port } => {
            let sa = (host.as_str(), *port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut it| it.next())
                .ok_or_else(|| BindError::Resolve(addr.clone()))?;
            let socket =
                Socket::new(Domain::for_address(sa), Type::STREAM, None).map_err(io_err)?;
            socket.set_reuse_address(true).map_err(io_err)?;
            if opts.reuse_port {
                socket.set_reuse_port(true).map_err(io_err)?;
            }
            socket.bind(&sa.into()).map_err(io_err)?;
            socket.listen(backlog).map_err(io_err)?;
            let local = socket
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .unwrap_or(sa);
            Ok(Bound {
                socket,
                kind: Kind::Tcp(local),
            })
        }
        BindAddr::Unix(path) => {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                let _ = std::fs::remove_file(path);
            }
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(io_err)?;
            let sock_addr = SockAddr::unix(path).map_err(io_err)?;
            // The socket file's mode comes from the umask at bind time, as in gunicorn.
            let old = umask(Mode::from_bits_truncate(opts.umask as nix::libc::mode_t));
            let bound = socket.bind(&sock_addr);
            umask(old);
            bound.map_err(io_err)?;
            socket.listen(backlog).map_err(io_err)?;
            Ok(Bound {
                socket,
                kind: Kind::Unix(path.clone()),
            })
        }
        BindAddr::Fd(fd) => {
            let socket = inherit(*fd).map_err(io_err)?;
            let local = socket.local_addr().map_err(io_err)?;
            let kind = match local.as_socket() {
                Some(sa) => Kind::Tcp(sa),
                None => Kind::Unix(local.as_pathname().map(PathBuf::from).unwrap_or_default()),
            };
            // Listening again on a listening socket only updates its backlog.
            socket.listen(backlog).map_err(io_err)?;
            Ok(Bound { socket, kind })
        }
    }
}

/// Takes ownership of a listening socket passed down by the parent process.
#[allow(unsafe_code)]
fn inherit(fd: i32) -> io::Result<Socket> {
    // Refuse descriptors that are not open stream sockets before claiming ownership of them.
    // SAFETY (borrow): the descriptor is only borrowed for this check, and `SO_TYPE` on a closed
    // or non-socket descriptor fails cleanly with EBADF / ENOTSOCK.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let kind = socket2::SockRef::from(&borrowed).r#type().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is not a socket: {e}"),
        )
    })?;
    if kind != Type::STREAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is not a stream socket"),
        ));
    }
    // SAFETY: the user named this descriptor with `fd://N` to hand it to us; we checked it is an
    // open stream socket, and nothing else in this process uses it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(Socket::from(owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_reports_the_real_port() {
        let b = bind(
            &BindAddr::parse("127.0.0.1:0").unwrap(),
            BindOptions::default(),
        )
        .unwrap();
        let url = b.url();
        assert!(url.starts_with("http://127.0.0.1:"));
        assert_ne!(url, "http://127.0.0.1:0");
    }

    #[test]
    fn a_busy_address_is_reported_as_in_use() {
        let first = bind(
            &BindAddr::parse("127.0.0.1:0").unwrap(),
            BindOptions::default(),
        )
        .unwrap();
        let Kind::Tcp(sa) = first.kind else {
            panic!("tcp")
        };
        let again = BindAddr::parse(&sa.to_string()).unwrap();
        assert!(matches!(
            bind(&again, BindOptions::default()),
            Err(BindError::InUse(_))
        ));
        let once = BindOptions {
            retry: false,
            ..BindOptions::default()
        };
        let err = bind_with_retry(&again, once).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Port {} is in use (by pid {}): pass --bind to use another.",
                sa.port(),
                std::process::id()
            )
        );
    }

    #[test]
    fn unix_socket_replaces_a_stale_file() {
        let dir = std::env::temp_dir().join(format!("ferrocorn-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let addr = BindAddr::Unix(path.clone());
        drop(bind(&addr, BindOptions::default()).unwrap());
        let again = bind(&addr, BindOptions::default()).unwrap();
        assert_eq!(again.url(), format!("unix:{}", path.display()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
