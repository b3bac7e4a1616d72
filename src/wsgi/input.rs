//! `wsgi.input`: a binary stream over the request body, read on demand. Bytes are pulled from
//! the `BodyReader` with Python detached, so a slow client never holds the GIL; nothing is read
//! before the app asks (which is also when `Expect: 100-continue` gets its answer). The stream
//! ends at the end of the body, so `wsgi.input_terminated` holds.

use std::sync::{Arc, Mutex, TryLockError};

use bytes::Bytes;
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::{BodyError, BodyReader};

/// The first body error, kept so the response can answer it (400) even if the app swallowed the
/// exception `read()` raised.
pub(super) type BodyFailure = Arc<Mutex<Option<BodyError>>>;

#[pyclass(frozen, module = "ferrocorn._ferrocorn")]
pub struct Input {
    state: Mutex<State>,
    failure: BodyFailure,
}

struct State {
    reader: Box<dyn BodyReader>,
    /// The unread rest of the last chunk.
    chunk: Bytes,
    eof: bool,
}

impl Input {
    pub fn new(reader: Box<dyn BodyReader>) -> (Input, BodyFailure) {
        let failure: BodyFailure = Arc::default();
        let state = State {
            reader,
            chunk: Bytes::new(),
            eof: false,
        };
        (
            Input {
                state: Mutex::new(state),
                failure: failure.clone(),
            },
            failure,
        )
    }

    /// Runs `f` on the stream state. Two threads reading one request body is an app bug; it is
    /// refused rather than blocked on, because blocking here while attached could deadlock with
    /// a reader that is waiting, detached, for the client.
    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> PyResult<R>) -> PyResult<R> {
        match self.state.try_lock() {
            Ok(mut st) => f(&mut st),
            Err(TryLockError::WouldBlock) => Err(PyRuntimeError::new_err(
                "wsgi.input is being read by another thread",
            )),
            Err(TryLockError::Poisoned(p)) => f(&mut p.into_inner()),
        }
    }
}

impl State {
    /// Reads up to `limit` bytes (all when `None`), stopping after `\n` when `line` is set.
    /// What is buffered is served at once; otherwise Python is detached once, however many
    /// chunks the client takes to send what this call needs.
    fn read(
        &mut self,
        py: Python<'_>,
        failure: &BodyFailure,
        limit: Option<usize>,
        line: bool,
    ) -> PyResult<Pieces> {
        let mut out = Pieces::default();
        if self.take_into(&mut out, limit, line) || self.eof {
            return Ok(out);
        }
        let waited = py.detach(|| -> Result<(), BodyError> {
            loop {
                match self.reader.next_chunk()? {
                    Some(chunk) => {
                        self.chunk = chunk;
                        if self.take_into(&mut out, limit, line) {
                            return Ok(());
                        }
                    }
                    None => {
                        self.eof = true;
                        return Ok(());
                    }
                }
            }
        });
        if let Err(err) = waited {
            self.eof = true;
            let msg = err.to_string();
            if let Ok(mut slot) = failure.lock() {
                slot.get_or_insert(err);
            }
            return Err(PyOSError::new_err(msg));
        }
        Ok(out)
    }

    /// Moves what this read may take from the current chunk into `out` (without copying);
    /// true once the read is satisfied (the limit reached, or a line ended).
    fn take_into(&mut self, out: &mut Pieces, limit: Option<usize>, line: bool) -> bool {
        let room = limit.map_or(usize::MAX, |n| n.saturating_sub(out.len));
        let want = room.min(self.chunk.len());
        let newline = line.then(|| memchr(b'\n', &self.chunk[..want])).flatten();
        let take = newline.map_or(want, |i| i + 1);
        if take > 0 {
            out.len += take;
            out.parts.push(self.chunk.split_to(take));
        }
        newline.is_some() || limit.is_some_and(|n| out.len >= n)
    }
}

/// The bytes one read gathered, still in the chunks they arrived in: copied once, into the
/// `bytes` object the app gets.
#[derive(Default)]
struct Pieces {
    parts: Vec<Bytes>,
    len: usize,
}

impl Pieces {
    fn into_pybytes(self, py: Python<'_>) -> PyResult<Bound<'_, PyBytes>> {
        if let [one] = self.parts.as_slice() {
            return Ok(PyBytes::new(py, one));
        }
        PyBytes::new_with(py, self.len, |buf| {
            let mut at = 0;
            for part in &self.parts {
                buf[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            Ok(())
        })
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// `None` and negative sizes mean "no limit", as for Python file objects.
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size = None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        self.with_state(|st| st.read(py, &self.failure, limit(size), false))?
            .into_pybytes(py)
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        self.with_state(|st| st.read(py, &self.failure, limit(size), true))?
            .into_pybytes(py)
    }

    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|h| *h > 0);
        let lines = self.with_state(|st| {
            let mut lines = Vec::new();
            let mut total = 0;
            loop {
                let line = st.read(py, &self.failure, None, true)?;
                if line.len == 0 {
                    break;
                }
                total += line.len;
                lines.push(line);
                if hint.is_some_and(|h| total >= h) {
                    break;
                }
            }
            Ok(lines)
        })?;
        let lines = lines
            .into_iter()
            .map(|l| l.into_pybytes(py))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.readline(py, None)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    struct Chunks(VecDeque<Result<Bytes, BodyError>>);

    impl BodyReader for Chunks {
        fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
            self.0.pop_front().transpose()
        }
    }

    fn input(chunks: &[&str]) -> Input {
        let q = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c.as_bytes())))
            .collect();
        Input::new(Box::new(Chunks(q))).0
    }

    #[test]
    fn reads_across_chunk_boundaries() {
        Python::attach(|py| {
            let inp = input(&["ab", "c\nde", "f\n", "tail"]);
            assert_eq!(inp.read(py, Some(1)).unwrap().as_bytes(), b"a");
            assert_eq!(inp.readline(py, None).unwrap().as_bytes(), b"bc\n");
            assert_eq!(inp.readline(py, Some(2)).unwrap().as_bytes(), b"de");
            assert_eq!(inp.readline(py, Some(-1)).unwrap().as_bytes(), b"f\n");
            assert_eq!(inp.read(py, None).unwrap().as_bytes(), b"tail");
            assert_eq!(inp.read(py, Some(10)).unwrap().as_bytes(), b"");
            assert_eq!(inp.readline(py, None).unwrap().as_bytes(), b"");
        });
    }

    #[test]
    fn readlines_honours_the_hint() {
        Python::attach(|py| {
            let inp = input(&["a\nb\n", "c\nd"]);
            let first = inp.readlines(py, Some(3)).unwrap();
            assert_eq!(first.len(), 2);
            let rest = inp.readlines(py, None).unwrap();
            assert_eq!(rest.len(), 2);
        });
    }

    #[test]
    fn a_body_error_raises_and_is_remembered() {
        Python::attach(|py| {
            let q = VecDeque::from([
                Ok(Bytes::from_static(b"x")),
                Err(BodyError::Malformed("bad chunk".into())),
            ]);
            let (inp, failure) = Input::new(Box::new(Chunks(q)));
            let err = inp.read(py, None).unwrap_err();
            assert!(err.is_instance_of::<PyOSError>(py));
            assert!(matches!(
                *failure.lock().unwrap(),
                Some(BodyError::Malformed(_))
            ));
        });
    }
}
