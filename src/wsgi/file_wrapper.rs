//! `wsgi.file_wrapper`. The wrapper is a plain iterable (so any app or middleware can treat it
//! as one), but when the app returns it around a real file the driver recognises it and sends
//! the file from Rust with Python detached, reading from its own descriptor at the file's
//! current position.

use std::fs::File;
use std::io::{Seek, SeekFrom};

use pyo3::intern;
use pyo3::prelude::*;

#[pyclass(frozen, module = "ferrocorn._ferrocorn")]
pub struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

/// A regular file ready to be streamed: its own descriptor, positioned, and what is left.
pub struct OpenFile {
    pub file: File,
    pub len: u64,
}

impl FileWrapper {
    /// Opens the wrapped object's file for sending from Rust, or `None` when it is not a
    /// regular file with a descriptor (a `BytesIO`, a socket): then it is iterated instead.
    pub fn open(&self, py: Python<'_>) -> Option<OpenFile> {
        let filelike = self.filelike.bind(py);
        let fd: i32 = filelike
            .call_method0(intern!(py, "fileno"))
            .ok()?
            .extract()
            .ok()?;
        let pos: u64 = match filelike.call_method0(intern!(py, "tell")) {
            Ok(p) => p.extract().ok()?,
            Err(_) => 0,
        };
        // A fresh open of the same file: its own offset, and nothing of Python's buffering.
        let mut file = File::open(format!("/proc/self/fd/{fd}")).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        file.seek(SeekFrom::Start(pos)).ok()?;
        Some(OpenFile {
            file,
            len: meta.len().saturating_sub(pos),
        })
    }
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> FileWrapper {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1(intern!(py, "read"), (self.blksize,))?;
        Ok((data.len()? > 0).then_some(data))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr(intern!(py, "close"))? {
            filelike.call_method0(intern!(py, "close"))?;
        }
        Ok(())
    }

    #[getter]
    fn filelike(&self, py: Python<'_>) -> Py<PyAny> {
        self.filelike.clone_ref(py)
    }

    #[getter]
    fn blksize(&self) -> usize {
        self.blksize
    }
}
