//! The files behind a request: resolving a checked relative path to a real file that stays
//! inside the mount's directory (symlinks followed, then the result checked), finding its
//! precompressed siblings, opening a representation with its validators, and its media type.
//! Blocking filesystem calls: callers run this off the async runtime. Which representation to
//! send and what to answer is `reply`'s decision.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use http::HeaderValue;

use super::conditional::Validators;
use super::encoding::Encoding;
use super::error::StaticError;

/// A representation opened for sending.
#[derive(Debug)]
pub(super) struct Opened {
    pub(super) file: File,
    pub(super) len: u64,
    pub(super) validators: Validators,
    /// `None` for the file itself.
    pub(super) encoding: Option<Encoding>,
}

/// The real path of `wanted` (the mount's canonical `root` joined with a checked relative
/// path) when it is a regular file inside `root`. Symlinks are followed first and the result
/// checked after, so a link inside the directory to a file inside it is served and a link to
/// anything outside it is refused.
pub(super) fn locate(root: &Path, wanted: &Path) -> Result<PathBuf, StaticError> {
    let real = std::fs::canonicalize(wanted)?;
    if !real.starts_with(root) {
        return Err(StaticError::Refused("it resolves outside the directory"));
    }
    let meta = std::fs::metadata(&real)?;
    if meta.is_dir() {
        return Err(StaticError::Directory);
    }
    if !meta.is_file() {
        return Err(StaticError::NotFound);
    }
    Ok(real)
}

/// The real path of the sibling of `wanted` holding it in `encoding` (`app.js.br` beside
/// `app.js`, looked up beside the name the client asked for), if there is one that `locate`
/// accepts.
pub(super) fn sibling(root: &Path, wanted: &Path, encoding: Encoding) -> Option<PathBuf> {
    let mut name = wanted.as_os_str().to_owned();
    name.push(encoding.suffix());
    locate(root, Path::new(&name)).ok()
}

/// Opens a located file. `O_NOFOLLOW` refuses a final symlink swapped in since `locate`, and
/// `O_NONBLOCK` keeps a FIFO swapped in from blocking the open; the type is checked again on
/// the open handle, whose size and time are the ones sent.
pub(super) fn open(real: &Path, encoding: Option<Encoding>) -> Result<Opened, StaticError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(real)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(StaticError::NotFound);
    }
    let tag = encoding.map(|e| match e {
        Encoding::Brotli => "br",
        Encoding::Gzip => "gz",
    });
    Ok(Opened {
        file,
        len: meta.len(),
        validators: Validators::new(meta.len(), meta.modified().ok(), tag),
        encoding,
    })
}

/// The `Content-Type` for a file name: guessed from its extension, text types in UTF-8, and
/// `application/octet-stream` when the extension says nothing.
pub(super) fn content_type(path: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let essence = mime.essence_str();
    let text = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        )
        || essence.ends_with("+json")
        || essence.ends_with("+xml");
    let value = match text {
        true => HeaderValue::from_str(&format!("{essence}; charset=utf-8")),
        false => HeaderValue::from_str(essence),
    };
    value.unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let ct = |name: &str| content_type(Path::new(name));
        assert_eq!(ct("a.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("a.html"), "text/html; charset=utf-8");
        assert_eq!(ct("a.css"), "text/css; charset=utf-8");
        assert!(ct("a.js")
            .to_str()
            .unwrap()
            .ends_with("javascript; charset=utf-8"));
        assert_eq!(ct("a.json"), "application/json; charset=utf-8");
        assert_eq!(ct("a.svg"), "image/svg+xml; charset=utf-8");
        assert_eq!(ct("a.png"), "image/png");
        assert_eq!(ct("a.woff2"), "font/woff2");
        assert_eq!(ct("a.unknownext"), "application/octet-stream");
        assert_eq!(ct("noext"), "application/octet-stream");
    }

    #[test]
    fn files_stay_inside_the_root() {
        let tmp = std::env::temp_dir().join(format!("ferrocorn-file-{}", std::process::id()));
        let root = tmp.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(tmp.join("secret"), b"s").unwrap();
        std::fs::write(root.join("a.txt"), b"hello").unwrap();
        std::fs::write(root.join("a.txt.gz"), b"gz").unwrap();
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("inside")).unwrap();
        std::os::unix::fs::symlink(tmp.join("secret"), root.join("outside")).unwrap();
        std::os::unix::fs::symlink(&tmp, root.join("up")).unwrap();
        let root = root.canonicalize().unwrap();

        assert_eq!(
            locate(&root, &root.join("a.txt")).unwrap(),
            root.join("a.txt")
        );
        assert_eq!(
            locate(&root, &root.join("inside")).unwrap(),
            root.join("a.txt")
        );
        assert!(matches!(
            locate(&root, &root.join("outside")),
            Err(StaticError::Refused(_))
        ));
        assert!(matches!(
            locate(&root, &root.join("up/secret")),
            Err(StaticError::Refused(_))
        ));
        assert!(matches!(
            locate(&root, &root.join("sub")),
            Err(StaticError::Directory)
        ));
        assert!(matches!(
            locate(&root, &root.join("nope")),
            Err(StaticError::NotFound)
        ));
        assert!(matches!(
            locate(&root, &root.join("a.txt/x")),
            Err(StaticError::NotFound)
        ));

        let gz = sibling(&root, &root.join("a.txt"), Encoding::Gzip).unwrap();
        assert_eq!(gz, root.join("a.txt.gz"));
        assert!(sibling(&root, &root.join("a.txt"), Encoding::Brotli).is_none());
        let opened = open(&gz, Some(Encoding::Gzip)).unwrap();
        assert_eq!(opened.len, 2);
        assert!(opened.validators.etag.ends_with("-gz\""));
        let plain = open(&root.join("a.txt"), None).unwrap();
        assert_ne!(plain.validators.etag, opened.validators.etag);
        // A final symlink is not followed at open time (it could have been swapped in).
        assert!(matches!(
            open(&root.join("inside"), None),
            Err(StaticError::NotFound)
        ));
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
