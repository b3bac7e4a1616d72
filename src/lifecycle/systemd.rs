//! systemd integration, the two halves gunicorn has: socket activation (`LISTEN_FDS` and
//! `LISTEN_PID`: serve on the sockets systemd bound, starting at descriptor 3) and readiness
//! notification (`READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=` as datagrams to
//! `$NOTIFY_SOCKET`, a path or an abstract `@name`). Without those variables nothing happens.

use std::os::fd::RawFd;

use pyo3::prelude::*;

/// The first descriptor systemd passes.
const LISTEN_FDS_START: RawFd = 3;

/// The sockets systemd passed to this process, if it passed any; the variables are removed so
/// that processes the app starts do not take them as theirs.
pub(super) fn listen_fds(py: Python<'_>) -> PyResult<Option<Vec<RawFd>>> {
    let environ = py.import("os")?.getattr("environ")?;
    let get = |name: &str| -> PyResult<Option<String>> {
        environ.call_method1("get", (name,))?.extract()
    };
    let (Some(pid), Some(count)) = (get("LISTEN_PID")?, get("LISTEN_FDS")?) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        environ.call_method1("pop", (name, py.None()))?;
    }
    let count = count.trim().parse::<RawFd>().unwrap_or(0).max(0);
    Ok(Some((LISTEN_FDS_START..LISTEN_FDS_START + count).collect()))
}

/// Sends `state` to the service manager when `$NOTIFY_SOCKET` names one. Failures are only
/// logged: a server must not stop because its manager cannot hear it.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(err) = send(&path, state) {
        tracing::debug!("sd_notify {state:?} to {path:?} failed: {err}");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            socket.send_to(state.as_bytes(), path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_sends_the_state_to_the_socket() {
        let dir = std::env::temp_dir().join(format!("ferrocorn-sd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
