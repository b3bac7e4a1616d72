//! `--pid FILE`: the server's pid, written once it listens and removed when it stops, as
//! gunicorn does it: refused when the file names another live process, replaced when stale,
//! written to a temporary file beside it and renamed so readers never see half a number.

use std::io::Write;
use std::path::{Path, PathBuf};

use nix::sys::signal::kill;
use nix::unistd::Pid;

/// A pid file this process wrote; `remove` deletes it if it still holds our pid.
#[derive(Debug)]
pub(super) struct PidFile {
    path: PathBuf,
    pid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("Already running on PID {pid} (or pid file '{}' is stale)", path.display())]
    Running { pid: i32, path: PathBuf },
    #[error("Cannot write pid file {}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
}

/// The name the pid file has: `PIDFILE.2` for a server started by USR2 (`old_master`) until
/// the old server is gone, as in gunicorn.
pub(super) fn name(path: &Path, old_master: Option<i32>) -> PathBuf {
    match old_master {
        Some(_) => {
            let mut two = path.as_os_str().to_os_string();
            two.push(".2");
            PathBuf::from(two)
        }
        None => path.to_path_buf(),
    }
}

impl PidFile {
    pub(super) fn create(path: &Path) -> Result<PidFile, PidFileError> {
        let pid = std::process::id();
        if let Some(old) = read_pid(path) {
            if old != pid as i32 && alive(old) {
                return Err(PidFileError::Running {
                    pid: old,
                    path: path.into(),
                });
            }
        }
        let io = |err| PidFileError::Io {
            path: path.into(),
            err,
        };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let tmp = dir
            .unwrap_or(Path::new("."))
            .join(format!(".{}.{pid}.tmp", file_name(path)));
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(format!("{pid}\n").as_bytes()).map_err(io)?;
        drop(f);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(PidFile {
            path: path.into(),
            pid,
        })
    }

    /// The pid file an earlier image of this process wrote (same pid), without touching it.
    pub(super) fn adopt(path: &Path) -> PidFile {
        PidFile {
            path: path.into(),
            pid: std::process::id(),
        }
    }

    pub(super) fn remove(self) {
        if read_pid(&self.path) == Some(self.pid as i32) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pid".into())
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether a process with this pid exists (signal 0 checks without sending anything).
fn alive(pid: i32) -> bool {
    pid > 0 && kill(Pid::from_raw(pid), None).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("ferrocorn-{name}-{}", std::process::id()))
    }

    #[test]
    fn writes_and_removes_our_pid() {
        let path = temp_path("pid-ok");
        let pf = PidFile::create(&path).unwrap();
        assert_eq!(read_pid(&path), Some(std::process::id() as i32));
        pf.remove();
        assert!(!path.exists());
    }

    #[test]
    fn a_live_process_keeps_its_pid_file_and_a_stale_one_is_replaced() {
        let path = temp_path("pid-live");
        // pid 1 is always alive.
        std::fs::write(&path, "1\n").unwrap();
        let err = PidFile::create(&path).unwrap_err();
        assert!(
            err.to_string().starts_with("Already running on PID 1"),
            "{err}"
        );
        // A pid that cannot exist.
        std::fs::write(&path, "2147483646\n").unwrap();
        PidFile::create(&path).unwrap().remove();
        assert!(!path.exists());
    }
}
