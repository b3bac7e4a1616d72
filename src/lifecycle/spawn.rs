//! Starting ferrocorn processes from ferrocorn: the supervisor's worker processes, the new
//! generation a single process starts on SIGHUP, the new server USR2 starts. A child is always a
//! fresh `python -m ferrocorn` with the same arguments, started by exec (never a fork that goes
//! on running: this process runs Tokio threads and Python). It inherits the listening sockets as
//! descriptors named in `FERROCORN_FDS` and, when it is a worker, one end of a socket pair
//! (`FERROCORN_LINK`) through which it reports to its parent, one byte per message. The child
//! takes these variables out of its environment at startup, so the app never sees them.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use pyo3::prelude::*;

/// The listening sockets a child inherits: `3,4`.
const FDS_ENV: &str = "FERROCORN_FDS";
/// The child's end of its link to the parent.
const LINK_ENV: &str = "FERROCORN_LINK";
/// Set for a server started by USR2: the pid of the server that started it.
const MASTER_ENV: &str = "FERROCORN_MASTER_PID";
/// For a supervisor that replaced its own image (after a reload): the worker it already has,
/// as `PID:LINK_FD:AGE:OLD_MASTER` (0 when no server started this one with USR2).
const ADOPT_ENV: &str = "FERROCORN_ADOPT";
/// A worker's rank among the workers its supervisor started (`worker.age` in hooks).
const AGE_ENV: &str = "FERROCORN_WORKER_AGE";

/// What a worker tells its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Report {
    /// Past the configuration and the sockets, the worker imports the app now.
    Loading,
    /// The app is loaded and the worker accepts connections.
    Ready,
    /// Still alive (sent every second).
    Beat,
    /// `--max-requests` reached: start my replacement, then stop me.
    Recycle,
    /// `--reload`: a watched file changed; replace every worker with fresh code.
    Changed,
}

impl Report {
    pub(super) fn byte(self) -> u8 {
        match self {
            Report::Loading => b'L',
            Report::Ready => b'R',
            Report::Beat => b'B',
            Report::Recycle => b'M',
            Report::Changed => b'C',
        }
    }

    pub(super) fn from_byte(b: u8) -> Option<Report> {
        match b {
            b'L' => Some(Report::Loading),
            b'R' => Some(Report::Ready),
            b'B' => Some(Report::Beat),
            b'M' => Some(Report::Recycle),
            b'C' => Some(Report::Changed),
            _ => None,
        }
    }
}

/// How to start ferrocorn again: this interpreter, these arguments, from this directory.
#[derive(Debug, Clone)]
pub(super) struct Launch {
    python: PathBuf,
    args: Vec<String>,
    cwd: PathBuf,
}

/// What this process inherited from the ferrocorn process that started it.
#[derive(Debug, Default)]
pub(super) struct Inherited {
    /// Listening sockets to serve on instead of binding.
    pub fds: Option<Vec<RawFd>>,
    /// The link to the parent, when this process is its worker.
    pub link: Option<OwnedFd>,
    /// The server that started this one with USR2.
    pub old_master: Option<i32>,
    /// This worker's age (1 when not a worker).
    pub age: u64,
    /// The worker this process supervises already (it replaced its own image after a reload).
    pub adopt: Option<Adopted>,
}

/// A worker process started by an earlier image of this process.
#[derive(Debug)]
pub(super) struct Adopted {
    pub pid: u32,
    pub link: OwnedFd,
    pub age: u64,
    /// The server that started this one with USR2, if it still runs.
    pub old_master: Option<i32>,
}

impl Launch {
    /// `argv` is the command line as given (`sys.argv`, its first item the program).
    pub(super) fn current(py: Python<'_>, argv: &[String]) -> PyResult<Launch> {
        let python: PathBuf = py.import("sys")?.getattr("executable")?.extract()?;
        Ok(Launch {
            python,
            args: argv.iter().skip(1).cloned().collect(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        })
    }

    /// The command line again, as `config::load` reads it.
    pub(super) fn argv(&self) -> Vec<String> {
        std::iter::once("ferrocorn".to_string())
            .chain(self.args.iter().cloned())
            .collect()
    }

    fn command(&self, fds: &[RawFd]) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.python);
        cmd.arg("-m")
            .arg("ferrocorn")
            .args(&self.args)
            .current_dir(&self.cwd)
            .env(FDS_ENV, join(fds))
            .env_remove(LINK_ENV)
            .env_remove(MASTER_ENV)
            .env_remove(AGE_ENV)
            .env_remove(ADOPT_ENV);
        cmd
    }

    /// Starts a worker serving on `fds`; returns it and the parent's end of its link.
    pub(super) fn worker(
        &self,
        fds: &[RawFd],
        age: u64,
    ) -> std::io::Result<(tokio::process::Child, tokio::net::UnixStream)> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let mut cmd = self.command(fds);
        cmd.env(LINK_ENV, theirs.as_raw_fd().to_string())
            .env(AGE_ENV, age.to_string());
        let mut inherit: Vec<RawFd> = fds.to_vec();
        inherit.push(theirs.as_raw_fd());
        let child = spawn_inheriting(cmd, inherit)?;
        drop(theirs);
        ours.set_nonblocking(true)?;
        Ok((child, tokio::net::UnixStream::from_std(ours)?))
    }

    /// Replaces this process's image with a fresh supervisor of `worker` on `fds`: same pid,
    /// none of the memory the old app held. Returns only if the exec failed.
    #[allow(unsafe_code)]
    pub(super) fn become_supervisor(
        &self,
        fds: &[RawFd],
        worker: (u32, RawFd, u64),
        old_master: Option<i32>,
        pending: &[super::signals::Sig],
    ) -> std::io::Error {
        use std::os::unix::process::CommandExt;
        let (pid, link, age) = worker;
        let old = old_master.unwrap_or(0);
        for fd in fds.iter().chain([&link]) {
            // SAFETY: fcntl on descriptors this process owns and keeps open until the exec.
            if unsafe { nix::libc::fcntl(*fd, nix::libc::F_SETFD, 0) } == -1 {
                return std::io::Error::last_os_error();
            }
        }
        let mut cmd = self.command(fds);
        cmd.env(ADOPT_ENV, format!("{pid}:{link}:{age}:{old}"));
        // Held back (the caller holds them already), they stay pending across the exec for
        // the new image to handle.
        for sig in pending {
            let _ = nix::sys::signal::raise(sig.number());
        }
        let err = cmd.exec();
        super::signals::hold(false);
        err
    }

    /// Starts a new server on `fds` (SIGUSR2).
    pub(super) fn server(&self, fds: &[RawFd]) -> std::io::Result<tokio::process::Child> {
        let mut cmd = self.command(fds);
        cmd.env(MASTER_ENV, std::process::id().to_string());
        spawn_inheriting(cmd, fds.to_vec())
    }
}

fn join(fds: &[RawFd]) -> String {
    fds.iter()
        .map(RawFd::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[allow(unsafe_code)]
fn spawn_inheriting(
    mut cmd: std::process::Command,
    inherit: Vec<RawFd>,
) -> std::io::Result<tokio::process::Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl, which is
    // async-signal-safe; it allocates nothing (the list was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            for fd in &inherit {
                if nix::libc::fcntl(*fd, nix::libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    tokio::process::Command::from(cmd).spawn()
}

impl Inherited {
    /// Reads (and removes) what the parent passed down, and systemd's socket activation
    /// (`LISTEN_FDS` for this pid), which gunicorn also honours.
    #[allow(unsafe_code)]
    pub(super) fn take(py: Python<'_>) -> PyResult<Inherited> {
        let environ = py.import("os")?.getattr("environ")?;
        let pop = |name: &str| -> PyResult<Option<String>> {
            environ.call_method1("pop", (name, py.None()))?.extract()
        };
        let fds = pop(FDS_ENV)?.map(|v| {
            v.split(',')
                .filter_map(|f| f.trim().parse::<RawFd>().ok())
                .collect::<Vec<_>>()
        });
        let link = pop(LINK_ENV)?
            .and_then(|v| v.trim().parse::<RawFd>().ok())
            // SAFETY: our parent put its end of a socket pair at this descriptor for us and
            // named it here; nothing else in this process knows of it.
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
        if link.is_some() {
            // Only the supervisor speaks to systemd.
            pop("NOTIFY_SOCKET")?;
        }
        let old_master = pop(MASTER_ENV)?.and_then(|v| v.trim().parse().ok());
        let age = pop(AGE_ENV)?
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1);
        let adopt = pop(ADOPT_ENV)?.and_then(|v| {
            let mut parts = v.split(':').map(|p| p.trim().parse::<u64>().ok());
            let (pid, fd, age) = (parts.next()??, parts.next()??, parts.next()??);
            let old_master = parts
                .next()
                .flatten()
                .and_then(|o| i32::try_from(o).ok())
                .filter(|o| *o > 0);
            // SAFETY: the image this process had before its exec left its end of the worker's
            // link open at this descriptor and named it here.
            let link = unsafe { OwnedFd::from_raw_fd(RawFd::try_from(fd).ok()?) };
            Some(Adopted {
                pid: u32::try_from(pid).ok()?,
                link,
                age,
                old_master,
            })
        });
        let fds = fds.or(super::systemd::listen_fds(py)?);
        // Ours alone now: what the app starts must not hold the sockets or the link.
        for fd in fds
            .iter()
            .flatten()
            .copied()
            .chain(link.as_ref().map(|l| l.as_raw_fd()))
        {
            close_on_exec(fd);
        }
        if let Some(a) = &adopt {
            close_on_exec(a.link.as_raw_fd());
        }
        Ok(Inherited {
            fds,
            link,
            old_master,
            age,
            adopt,
        })
    }
}

#[allow(unsafe_code)]
fn close_on_exec(fd: RawFd) {
    // SAFETY: fcntl on a descriptor number; a closed one fails with EBADF, which is ignored.
    unsafe {
        nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_survive_the_wire() {
        for r in [Report::Ready, Report::Beat, Report::Recycle] {
            assert_eq!(Report::from_byte(r.byte()), Some(r));
        }
        assert_eq!(Report::from_byte(b'x'), None);
    }

    #[test]
    fn a_child_gets_the_same_arguments() {
        let launch = Launch {
            python: "/usr/bin/python3".into(),
            args: vec!["--bind".into(), "fd://3".into(), "app".into()],
            cwd: "/".into(),
        };
        assert_eq!(launch.argv(), ["ferrocorn", "--bind", "fd://3", "app"]);
        let cmd = launch.command(&[3, 4]);
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["-m", "ferrocorn", "--bind", "fd://3", "app"]);
        let fds = cmd
            .get_envs()
            .find(|(k, _)| *k == FDS_ENV)
            .and_then(|(_, v)| v)
            .map(|v| v.to_string_lossy().into_owned());
        assert_eq!(fds.as_deref(), Some("3,4"));
    }
}
