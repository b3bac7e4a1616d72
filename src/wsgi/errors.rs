//! `wsgi.errors`: a text stream whose lines go to the error log. Stateless, so one instance is
//! shared by every request and every thread; a partial line is logged as written.

use pyo3::prelude::*;
use pyo3::types::PyAny;

#[pyclass(frozen, module = "ferrocorn._ferrocorn")]
pub struct ErrorStream;

#[pymethods]
impl ErrorStream {
    fn write(&self, s: &str) -> usize {
        for line in s.lines().filter(|l| !l.is_empty()) {
            tracing::error!("{line}");
        }
        s.chars().count()
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            let line: String = line?.extract()?;
            self.write(&line);
        }
        Ok(())
    }

    fn flush(&self) {}
}
