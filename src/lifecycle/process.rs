//! How the process presents itself to the system, as gunicorn does it: `-D` (detach into the
//! background), `-u`/`-g`/`--initgroups` (whom to run as once the sockets are bound) and
//! `-n` (the process title); and the scheduling policy its threads run under.

use std::ffi::CString;

use nix::unistd::{Gid, Group, Uid, User};
use pyo3::prelude::*;

use crate::config::ProcessSettings;
use crate::error::StartupError;

/// `-D`: fork twice and leave the terminal, with stdio on /dev/null. Done through Python's
/// `os.fork`, which keeps the interpreter sound in the child; called before any thread starts.
pub(super) fn daemonize(py: Python<'_>) -> Result<(), StartupError> {
    let failed = |err: PyErr| StartupError::Python(format!("cannot daemonize: {err}"));
    let os = py.import("os").map_err(failed)?;
    let fork = || -> PyResult<bool> { Ok(os.call_method0("fork")?.extract::<i32>()? != 0) };
    let exit = || -> PyResult<()> { os.call_method1("_exit", (0,)).map(drop) };
    (|| -> PyResult<()> {
        if fork()? {
            exit()?;
        }
        os.call_method0("setsid")?;
        if fork()? {
            exit()?;
        }
        os.call_method1("umask", (0o22,))?;
        let null = os.call_method1("open", (os.getattr("devnull")?, os.getattr("O_RDWR")?))?;
        for fd in 0..3 {
            os.call_method1("dup2", (&null, fd))?;
        }
        Ok(())
    })()
    .map_err(failed)
}

/// Whom to run as: resolved before anything is bound, so a bad name fails at startup.
#[derive(Debug, Clone)]
pub(super) struct Owner {
    uid: Option<Uid>,
    gid: Option<Gid>,
    /// The user's name, for `--initgroups`.
    name: Option<CString>,
}

impl Owner {
    pub(super) fn resolve(p: &ProcessSettings) -> Result<Option<Owner>, StartupError> {
        if p.user.is_none() && p.group.is_none() {
            return Ok(None);
        }
        let bad = |what: &str, v: &str| StartupError::Python(format!("No such {what}: '{v}'"));
        let user = match &p.user {
            None => None,
            Some(u) => Some(match u.parse::<u32>() {
                Ok(id) => {
                    let uid = Uid::from_raw(id);
                    let name = User::from_uid(uid).ok().flatten();
                    (uid, name.and_then(|n| CString::new(n.name).ok()))
                }
                Err(_) => {
                    let found = User::from_name(u)
                        .ok()
                        .flatten()
                        .ok_or_else(|| bad("user", u))?;
                    (found.uid, CString::new(found.name).ok())
                }
            }),
        };
        let gid = match &p.group {
            Some(g) => Some(match g.parse::<u32>() {
                Ok(id) => Gid::from_raw(id),
                Err(_) => {
                    Group::from_name(g)
                        .ok()
                        .flatten()
                        .ok_or_else(|| bad("group", g))?
                        .gid
                }
            }),
            None => None,
        };
        Ok(Some(Owner {
            uid: user.as_ref().map(|(uid, _)| *uid),
            gid,
            name: if p.initgroups {
                user.and_then(|(_, name)| name)
            } else {
                None
            },
        }))
    }

    /// Unix socket files are handed to the new owner, so it can remove them at exit.
    pub(super) fn chown(&self, path: &std::path::Path) {
        if let Err(err) = nix::unistd::chown(path, self.uid, self.gid) {
            tracing::warn!("Cannot hand {} to the server's user: {err}", path.display());
        }
    }

    /// Switches to the user and group (groups first, while still allowed to). What ferrocorn
    /// itself imports later is imported first, while the standard library is surely readable
    /// (it may live where only the starting user can read it).
    pub(super) fn switch(&self, py: Python<'_>) -> Result<(), StartupError> {
        for module in PRELOADED {
            if let Err(err) = py.import(*module) {
                tracing::debug!("cannot import {module} before switching user: {err}");
            }
        }
        // Log files opened as root stay writable by the user (workers and reopened files
        // open them again), as gunicorn does.
        for path in crate::logging::files() {
            self.chown(&path);
        }
        let failed = |what: &'static str| {
            move |err: nix::Error| StartupError::Io {
                context: what,
                err: err.into(),
            }
        };
        let gid = self.gid.unwrap_or_else(Gid::effective);
        match &self.name {
            Some(name) => {
                nix::unistd::initgroups(name, gid).map_err(failed("Cannot set the groups"))?
            }
            None if self.gid.is_some() && gid != Gid::current() => {
                nix::unistd::setgroups(&[]).map_err(failed("Cannot set the groups"))?
            }
            None => {}
        }
        if self.gid.is_some() {
            nix::unistd::setgid(gid).map_err(failed("Cannot switch group"))?;
        }
        if let Some(uid) = self.uid {
            nix::unistd::setuid(uid).map_err(failed("Cannot switch user"))?;
        }
        Ok(())
    }
}

/// The modules ferrocorn imports on its own once serving (the app, hooks, tracebacks).
const PRELOADED: &[&str] = &[
    "importlib",
    "importlib.util",
    "ast",
    "inspect",
    "types",
    "traceback",
    "linecache",
];

/// Sets the process title: `ferrocorn: ROLE [NAME]` through the `setproctitle` package when it
/// is installed (as gunicorn does), and the kernel's 15-byte process name from `-n` always.
pub(super) fn set_title(py: Python<'_>, name: Option<&str>, role: &str, default: &str) {
    let shown = name.unwrap_or(default);
    if let Ok(m) = py.import("setproctitle") {
        let _ = m.call_method1("setproctitle", (format!("ferrocorn: {role} [{shown}]"),));
    }
    if let Some(name) = name {
        let short: String = name.chars().take(15).collect();
        if let Ok(c) = CString::new(short) {
            if let Err(err) = nix::sys::prctl::set_name(&c) {
                tracing::debug!("cannot set the process name: {err}");
            }
        }
    }
}

/// Puts this thread, and every thread and process started from it afterwards (they inherit the
/// policy), under `SCHED_BATCH`: a woken thread does not preempt the one running on its core
/// but waits for its turn. With the I/O threads and the pool threads handing each request back
/// and forth, the default policy switches threads at each hand-off (and at each GIL release in
/// the app) on a saturated core; batch lets each run until it waits. A server started under
/// another policy than the default (real-time, idle) keeps it.
#[allow(unsafe_code)]
pub(super) fn batch_scheduling() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: system calls on the calling thread (pid 0) with a valid parameter.
        let set = unsafe {
            if libc::sched_getscheduler(0) != libc::SCHED_OTHER {
                return Ok(());
            }
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_BATCH, &param)
        };
        if set != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
