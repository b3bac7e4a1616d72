//! The `--reload` watcher: tells once that a watched file changed. It watches the directories
//! of the files it is given (not the files, so an editor's save-by-rename is seen) and matches
//! each event against the files, any `.py` file beside them or in the project's own directories
//! (a module the app has not imported yet, or one whose import failed), and
//! `--reload-extra-file` globs. Changes are debounced: the report waits until no relevant event
//! came for a moment (at most half a second), so a save or a `git checkout` is one reload while
//! a log file written beside the code delays nothing. It knows nothing of Python: the caller
//! hands it file lists, and more as modules are imported.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use notify::event::EventKind;
use notify::{RecursiveMode, Watcher};

use crate::config::ReloadEngine;

/// Relevant events closer together than this are one change...
const QUIET: Duration = Duration::from_millis(100);
/// ...but a change is reported this long after its first event at the latest.
const SETTLE: Duration = Duration::from_millis(500);
/// How often the poll engine looks, and how often the caller is asked for new files.
const INTERVAL: Duration = Duration::from_millis(500);

/// Asked every [`INTERVAL`] for files to add (modules imported since); `None` when nothing is
/// new.
pub type MoreFiles = Box<dyn FnMut() -> Option<Vec<PathBuf>> + Send>;

/// A running watcher. Dropping it stops it.
pub struct Watch {
    changed: tokio::sync::mpsc::UnboundedReceiver<PathBuf>,
    stop: Arc<AtomicBool>,
    /// Which engine runs (`inotify` or `poll`), and how many files it watches at the start.
    pub engine: &'static str,
    pub files: usize,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch files: {0}")]
    Notify(#[from] notify::Error),
    #[error("cannot start the watcher thread: {0}")]
    Thread(std::io::Error),
}

impl Watch {
    /// Watches `files`, the `.py` files in `dirs`, and the `extra` paths or globs (relative to
    /// `cwd`; checked by the settings). A file modified after `since` (while the app was
    /// importing, or before a module imported later was found) counts as changed at once.
    pub fn start(
        engine: ReloadEngine,
        files: Vec<PathBuf>,
        dirs: Vec<PathBuf>,
        extra: &[String],
        cwd: &Path,
        since: SystemTime,
        more: MoreFiles,
    ) -> Result<Watch, WatchError> {
        let (events_tx, events) = mpsc::channel();
        let (watcher, engine) = watcher(engine, events_tx)?;
        let mut targets = Targets {
            watcher,
            files: HashSet::new(),
            dirs: HashSet::new(),
            recursive: Vec::new(),
            globs: Vec::new(),
            since,
        };
        // Globs first: their recursive watches cover the module directories below them.
        for spec in extra {
            targets.add_extra(spec, cwd);
        }
        for dir in dirs {
            if let Ok(dir) = dir.canonicalize() {
                targets.watch_dir(dir);
            }
        }
        let added = targets.add(files);
        let count = targets.files.len();
        let (changed_tx, changed) = tokio::sync::mpsc::unbounded_channel();
        let early = targets.modified_since(&added);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("ferrocorn-reload".into())
            .spawn(move || {
                let path = match early {
                    Some(path) => Some(path),
                    None => targets.wait(&events, &stopped, more),
                };
                if let Some(path) = path {
                    let _ = changed_tx.send(path);
                }
            })
            .map_err(WatchError::Thread)?;
        Ok(Watch {
            changed,
            stop,
            engine,
            files: count,
        })
    }

    /// The first changed file; pending forever once reported (or if the watcher died).
    pub async fn changed(&mut self) -> PathBuf {
        match self.changed.recv().await {
            Some(path) => path,
            None => std::future::pending().await,
        }
    }
}

type Events = mpsc::Receiver<notify::Result<notify::Event>>;

fn watcher(
    engine: ReloadEngine,
    tx: mpsc::Sender<notify::Result<notify::Event>>,
) -> Result<(Box<dyn Watcher + Send>, &'static str), WatchError> {
    let poll = |tx| -> Result<(Box<dyn Watcher + Send>, &'static str), WatchError> {
        // notify's poller keeps mtimes in whole seconds: a second save within the same
        // second would go unseen without comparing contents.
        let config = notify::Config::default()
            .with_poll_interval(INTERVAL)
            .with_compare_contents(true);
        Ok((Box::new(notify::PollWatcher::new(tx, config)?), "poll"))
    };
    match engine {
        ReloadEngine::Poll => poll(tx),
        ReloadEngine::Inotify => Ok((Box::new(notify::recommended_watcher(tx)?), "inotify")),
        ReloadEngine::Auto => match notify::recommended_watcher(tx.clone()) {
            Ok(w) => Ok((Box::new(w), "inotify")),
            Err(err) => {
                tracing::warn!("Cannot use the OS file-watch API ({err}); polling instead");
                poll(tx)
            }
        },
    }
}

struct Targets {
    watcher: Box<dyn Watcher + Send>,
    /// Exact files, as `canonical parent / name`.
    files: HashSet<PathBuf>,
    /// Directories watched for their `.py` files (canonical).
    dirs: HashSet<PathBuf>,
    /// Directories watched with their subdirectories (for globs): a directory below one is
    /// not watched again, which would narrow the watch (notify's poller keys watches by path).
    recursive: Vec<PathBuf>,
    globs: Vec<glob::Pattern>,
    since: SystemTime,
}

impl Targets {
    /// Adds exact files; returns those that were new.
    fn add(&mut self, files: Vec<PathBuf>) -> Vec<PathBuf> {
        let mut added = Vec::new();
        for file in files {
            let (Some(parent), Some(name)) = (file.parent(), file.file_name()) else {
                continue;
            };
            let Ok(dir) = parent.canonicalize() else {
                continue;
            };
            let path = dir.join(name);
            self.watch_dir(dir);
            if self.files.insert(path.clone()) {
                added.push(path);
            }
        }
        added
    }

    /// Watches `dir` (canonical) for its files; a failed watch is tried again with the next
    /// file there.
    fn watch_dir(&mut self, dir: PathBuf) {
        if self.dirs.contains(&dir) {
            return;
        }
        let covered = self.recursive.iter().any(|r| dir.starts_with(r));
        if !covered {
            if let Err(err) = self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                tracing::warn!("Cannot watch {}: {err}", dir.display());
                return;
            }
        }
        self.dirs.insert(dir);
    }

    /// A path, or a glob whose fixed leading directories are watched recursively. The
    /// settings checked the pattern; one that fails here is logged and skipped.
    fn add_extra(&mut self, spec: &str, cwd: &Path) {
        let full = cwd.join(spec);
        let wild = |c: &std::path::Component<'_>| {
            c.as_os_str().to_string_lossy().contains(['*', '?', '['])
        };
        if !full.components().any(|c| wild(&c)) {
            self.add(vec![full]);
            return;
        }
        let fixed: PathBuf = full.components().take_while(|c| !wild(c)).collect();
        let tail: PathBuf = full.components().skip_while(|c| !wild(c)).collect();
        // Event paths are canonical, so the pattern starts from the canonical directory.
        let base = fixed.canonicalize().unwrap_or(fixed);
        let pattern = match glob::Pattern::new(&base.join(tail).to_string_lossy()) {
            Ok(p) => p,
            Err(err) => {
                tracing::error!("--reload-extra-file {spec:?}: {err}");
                return;
            }
        };
        match self.watcher.watch(&base, RecursiveMode::Recursive) {
            Ok(()) => self.recursive.push(base),
            Err(err) => tracing::warn!("Cannot watch {} for {spec}: {err}", base.display()),
        }
        self.globs.push(pattern);
    }

    fn wanted(&self, path: &Path) -> bool {
        // Not an editor's lock or swap file (`.#views.py`).
        let module_beside = || {
            path.extension().is_some_and(|e| e == "py")
                && path
                    .file_name()
                    .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
                && path.parent().is_some_and(|d| self.dirs.contains(d))
        };
        self.files.contains(path)
            || module_beside()
            || self.globs.iter().any(|g| g.matches_path(path))
    }

    /// The first of `files` modified after this process started.
    fn modified_since(&self, files: &[PathBuf]) -> Option<PathBuf> {
        files
            .iter()
            .find(|f| {
                std::fs::metadata(f)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t > self.since)
            })
            .cloned()
    }

    /// Blocks until a wanted path changes (then returns it, once the change settled), the
    /// watch is stopped, or the watcher dies. Every [`INTERVAL`] it asks for newly imported
    /// modules, however busy the directories are.
    fn wait(&mut self, events: &Events, stop: &AtomicBool, mut more: MoreFiles) -> Option<PathBuf> {
        let mut scanned = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            if scanned.elapsed() >= INTERVAL {
                scanned = Instant::now();
                let added = more().map(|files| self.add(files)).unwrap_or_default();
                // Edited between its import and now: the directory was not watched yet.
                if let Some(path) = self.modified_since(&added) {
                    return Some(path);
                }
                continue;
            }
            match events.recv_timeout(INTERVAL.saturating_sub(scanned.elapsed())) {
                Ok(Ok(event)) => {
                    if let Some(path) = self.relevant(&event) {
                        self.settle(events);
                        return Some(path);
                    }
                }
                Ok(Err(err)) => tracing::debug!("file watch: {err}"),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Waits until no relevant event came for [`QUIET`], or [`SETTLE`] passed.
    fn settle(&self, events: &Events) {
        let cap = Instant::now() + SETTLE;
        let mut quiet_until = Instant::now() + QUIET;
        loop {
            let until = quiet_until.min(cap);
            let now = Instant::now();
            if now >= until {
                return;
            }
            match events.recv_timeout(until - now) {
                Ok(Ok(event)) if self.relevant(&event).is_some() => {
                    quiet_until = Instant::now() + QUIET;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    fn relevant(&self, event: &notify::Event) -> Option<PathBuf> {
        let changes = matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
        );
        if !changes {
            return None;
        }
        event.paths.iter().find(|p| self.wanted(p)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ferrocorn-watch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.canonicalize().unwrap()
    }

    fn start(engine: ReloadEngine, dir: &Path, files: Vec<PathBuf>, extra: &[String]) -> Watch {
        Watch::start(
            engine,
            files,
            Vec::new(),
            extra,
            dir,
            SystemTime::now() + Duration::from_secs(3600),
            Box::new(|| None),
        )
        .unwrap()
    }

    fn changed(w: &mut Watch) -> Option<PathBuf> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(3), w.changed())
                .await
                .ok()
        })
    }

    #[test]
    fn a_module_file_saved_by_rename_is_one_change() {
        for engine in [ReloadEngine::Inotify, ReloadEngine::Poll] {
            let dir = tmp(&format!("rename-{engine:?}"));
            let views = dir.join("views.py");
            std::fs::write(&views, "x = 1\n").unwrap();
            std::fs::write(dir.join("notes.txt"), "").unwrap();
            let mut w = start(engine, &dir, vec![views.clone()], &[]);
            std::thread::sleep(Duration::from_millis(600));
            // Not watched: another kind of file beside the module.
            std::fs::write(dir.join("notes.txt"), "changed").unwrap();
            std::fs::write(dir.join("views.py.tmp"), "x = 2\n").unwrap();
            std::fs::rename(dir.join("views.py.tmp"), &views).unwrap();
            assert_eq!(changed(&mut w), Some(views), "{engine:?}");
        }
    }

    #[test]
    fn a_new_python_file_beside_a_module_counts_and_other_files_do_not() {
        let dir = tmp("beside");
        let models = dir.join("models.py");
        std::fs::write(&models, "").unwrap();
        let mut w = start(ReloadEngine::Inotify, &dir, vec![models], &[]);
        std::fs::write(dir.join("README.md"), "x").unwrap();
        std::fs::create_dir(dir.join("__pycache__")).unwrap();
        std::fs::write(dir.join("views.py"), "y = 1\n").unwrap();
        assert_eq!(changed(&mut w), Some(dir.join("views.py")));
    }

    #[test]
    fn extra_globs_match_files_in_subdirectories() {
        for engine in [ReloadEngine::Inotify, ReloadEngine::Poll] {
            let dir = tmp(&format!("glob-{engine:?}"));
            std::fs::create_dir_all(dir.join("templates/app")).unwrap();
            std::fs::write(dir.join("templates/app/page.html"), "<p>").unwrap();
            // A module at the glob's base must not narrow its recursive watch.
            std::fs::write(dir.join("app.py"), "").unwrap();
            let mut w = start(
                engine,
                &dir,
                vec![dir.join("app.py")],
                &["**/*.html".to_string()],
            );
            std::thread::sleep(Duration::from_millis(600));
            std::fs::write(dir.join("templates/app/x.txt"), "no").unwrap();
            std::fs::write(dir.join("templates/app/page.html"), "<p>changed").unwrap();
            assert_eq!(
                changed(&mut w),
                Some(dir.join("templates/app/page.html")),
                "{engine:?}"
            );
        }
    }

    #[test]
    fn a_project_directory_sees_a_new_module_but_not_editor_lock_files() {
        let dir = tmp("root");
        let mut w = Watch::start(
            ReloadEngine::Inotify,
            Vec::new(),
            vec![dir.clone()],
            &[],
            &dir,
            SystemTime::now() + Duration::from_secs(3600),
            Box::new(|| None),
        )
        .unwrap();
        std::fs::write(dir.join(".#hello.py"), "lock").unwrap();
        std::fs::write(dir.join("hello.py"), "x = 1\n").unwrap();
        assert_eq!(changed(&mut w), Some(dir.join("hello.py")));
    }

    #[test]
    fn a_busy_log_file_beside_the_code_does_not_hold_the_change_back() {
        let dir = tmp("busy");
        let app = dir.join("app.py");
        std::fs::write(&app, "").unwrap();
        let mut w = start(ReloadEngine::Inotify, &dir, vec![app.clone()], &[]);
        let log = dir.join("app.log");
        let writer = std::thread::spawn(move || {
            for i in 0..100 {
                std::fs::write(&log, format!("{i}")).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        let saved = Instant::now();
        std::fs::write(&app, "x = 2\n").unwrap();
        assert_eq!(changed(&mut w), Some(app));
        assert!(
            saved.elapsed() < Duration::from_millis(900),
            "{:?}",
            saved.elapsed()
        );
        writer.join().unwrap();
    }

    #[test]
    fn a_module_found_later_and_already_edited_counts_as_changed() {
        let dir = tmp("later");
        let lazy = dir.join("lazy.py");
        std::fs::write(&lazy, "").unwrap();
        let mut found = Some(vec![lazy.clone()]);
        let mut w = Watch::start(
            ReloadEngine::Inotify,
            Vec::new(),
            Vec::new(),
            &[],
            &dir,
            SystemTime::UNIX_EPOCH,
            Box::new(move || found.take()),
        )
        .unwrap();
        assert_eq!(changed(&mut w), Some(lazy));
    }

    #[test]
    fn a_file_changed_during_the_import_is_reported_at_once() {
        let dir = tmp("early");
        let f = dir.join("app.py");
        std::fs::write(&f, "").unwrap();
        let mut w = Watch::start(
            ReloadEngine::Poll,
            vec![f.clone()],
            Vec::new(),
            &[],
            &dir,
            SystemTime::UNIX_EPOCH,
            Box::new(|| None),
        )
        .unwrap();
        assert_eq!(changed(&mut w), Some(f));
    }
}
