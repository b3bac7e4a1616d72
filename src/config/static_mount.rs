//! `--static URL_PREFIX=DIR` values: the syntax check the settings table runs on each value, and
//! the startup resolution of DIR to a canonical directory. What a mount serves, and how, is
//! `crate::static_files`'s job; nothing here looks at requests.

use std::path::{Path, PathBuf};

use super::ConfigError;

/// One `--static` mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticMount {
    /// The value as given, for messages and `--print-config`.
    pub spec: String,
    /// The URL prefix, decoded, with no trailing `/` (`/static/` → `/static`); the root mount
    /// `/` is the empty string, so every prefix is matched as "equal, or followed by `/`".
    pub prefix: String,
    /// The directory served: as given until [`StaticMount::resolve`], canonical after.
    pub dir: PathBuf,
}

impl StaticMount {
    /// Parses `URL_PREFIX=DIR` (the first `=` splits). The prefix must start with `/` and be a
    /// plain decoded path: no `.`/`..` or empty segments, no `%`, `?`, `#`, `\` or control
    /// characters, since it is compared with the decoded request path segment by segment.
    pub fn parse(s: &str) -> Result<StaticMount, String> {
        let Some((prefix, dir)) = s.split_once('=') else {
            return Err("expected URL_PREFIX=DIR".into());
        };
        if !prefix.starts_with('/') {
            return Err(format!("the URL prefix '{prefix}' must start with /"));
        }
        if dir.is_empty() {
            return Err("no directory after '='".into());
        }
        let trimmed = prefix.trim_end_matches('/');
        if let Some(bad) = trimmed
            .chars()
            .find(|c| matches!(c, '%' | '?' | '#' | '\\') || c.is_control())
        {
            return Err(format!(
                "the URL prefix '{prefix}' may not contain {bad:?} (write it decoded)"
            ));
        }
        if trimmed
            .split('/')
            .skip(1)
            .any(|seg| matches!(seg, "" | "." | ".."))
        {
            return Err(format!(
                "the URL prefix '{prefix}' has an empty, '.' or '..' segment"
            ));
        }
        Ok(StaticMount {
            spec: s.to_string(),
            prefix: trimmed.to_string(),
            dir: PathBuf::from(dir),
        })
    }

    /// Makes `dir` canonical: relative to `--chdir` when given (as the app sees files), else
    /// to `cwd`. A directory that cannot be opened is a startup error, not a 404 per request.
    pub fn resolve(&self, cwd: &Path, chdir: Option<&Path>) -> Result<StaticMount, ConfigError> {
        let base = match chdir {
            Some(c) => cwd.join(c),
            None => cwd.to_path_buf(),
        };
        let wanted = base.join(&self.dir);
        let invalid = |reason: String| ConfigError::Invalid {
            name: "--static".into(),
            value: format!("'{}'", self.spec),
            reason,
        };
        let dir = std::fs::canonicalize(&wanted)
            .map_err(|err| invalid(format!("cannot open {}: {err}", wanted.display())))?;
        if !dir.is_dir() {
            return Err(invalid(format!("{} is not a directory", dir.display())));
        }
        Ok(StaticMount {
            dir,
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalized() {
        let m = StaticMount::parse("/static/=public").unwrap();
        assert_eq!(
            (m.prefix.as_str(), m.dir.as_path()),
            ("/static", Path::new("public"))
        );
        assert_eq!(StaticMount::parse("/=site").unwrap().prefix, "");
        assert_eq!(
            StaticMount::parse("/a/b=x=y").unwrap().dir,
            Path::new("x=y")
        );
    }

    #[test]
    fn bad_values_say_why() {
        for bad in [
            "static=public",
            "/static",
            "/static=",
            "/st%61tic=p",
            "/a/../b=p",
            "/a//b=p",
            "/a?x=p",
        ] {
            assert!(StaticMount::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolve_is_canonical_and_checked() {
        let tmp = std::env::temp_dir().join(format!("ferrocorn-mount-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("site/public")).unwrap();
        let m = StaticMount::parse("/s=public").unwrap();
        let r = m.resolve(&tmp, Some(Path::new("site"))).unwrap();
        assert_eq!(r.dir, tmp.join("site/public").canonicalize().unwrap());
        let err = m.resolve(&tmp, None).unwrap_err().to_string();
        assert!(
            err.starts_with("Invalid value for --static: '/s=public'"),
            "{err}"
        );
        std::fs::write(tmp.join("file"), b"x").unwrap();
        let err = StaticMount::parse("/s=file")
            .unwrap()
            .resolve(&tmp, None)
            .unwrap_err();
        assert!(err.to_string().contains("is not a directory"), "{err}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
