//! The app `--reload` serves while the real one cannot be imported: every request gets a 500
//! with the import's traceback, as an HTML page for a browser and as plain text for anything
//! else (curl), so the developer sees the error where they look for the page. It is a frozen
//! pyclass (nothing in it changes after it is built), safe to call from every pool thread at
//! once, with or without the GIL.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

#[pyclass(frozen, module = "ferrocorn", name = "ImportFailedApp")]
pub struct ErrorPage {
    text: Py<PyBytes>,
    html: Py<PyBytes>,
}

impl ErrorPage {
    /// The page for `error` (the traceback and ferrocorn's hint, as logged).
    pub fn new(py: Python<'_>, error: &str) -> ErrorPage {
        let text = format!(
            "500 Internal Server Error: the app failed to import.\n\
             ferrocorn reloads it as soon as a watched file changes.\n\n{error}\n"
        );
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Import error</title><style>\
             body{{font:15px/1.5 system-ui,sans-serif;margin:0;color:#222}}\
             header{{background:#b3261e;color:#fff;padding:1rem 2rem}}\
             h1{{margin:0;font-size:1.4rem}}main{{padding:1rem 2rem}}\
             pre{{background:#f6f6f6;border:1px solid #ddd;padding:1rem;overflow:auto;\
             font:13px/1.45 ui-monospace,monospace}}</style></head>\n<body>\
             <header><h1>The app failed to import</h1></header>\n<main>\
             <p>ferrocorn serves this page until the code is fixed, and reloads the app as \
             soon as a watched file changes.</p>\n<pre>{}</pre>\n</main></body></html>\n",
            escape(error)
        );
        ErrorPage {
            text: PyBytes::new(py, text.as_bytes()).unbind(),
            html: PyBytes::new(py, html.as_bytes()).unbind(),
        }
    }
}

#[pymethods]
impl ErrorPage {
    fn __call__(
        &self,
        py: Python<'_>,
        environ: &Bound<'_, PyDict>,
        start_response: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Py<PyBytes>>> {
        let browser = environ
            .get_item("HTTP_ACCEPT")?
            .and_then(|a| a.extract::<String>().ok())
            .is_some_and(|a| a.contains("text/html"));
        let (body, kind) = if browser {
            (&self.html, "text/html; charset=utf-8")
        } else {
            (&self.text, "text/plain; charset=utf-8")
        };
        let len = body.bind(py).as_bytes().len().to_string();
        let headers = vec![
            ("Content-Type", kind.to_string()),
            ("Content-Length", len),
            ("Cache-Control", "no-store".to_string()),
        ];
        start_response.call1(("500 Internal Server Error", headers))?;
        Ok(vec![body.clone_ref(py)])
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// The source files a traceback names (`File "/app/views.py", line 3`), so that fixing any of
/// them reloads the app, including the one whose syntax error stopped the import.
pub fn traceback_files(traceback: &str) -> Vec<std::path::PathBuf> {
    traceback
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("File \""))
        .filter_map(|rest| rest.split_once("\", line").map(|(path, _)| path))
        .filter(|path| !path.starts_with('<'))
        .map(std::path::PathBuf::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceback_files_include_the_syntax_error() {
        let tb = "Traceback (most recent call last):\n  File \"/p/app.py\", line 1, in <module>\n    import views\n  File \"<frozen importlib._bootstrap>\", line 1\n  File \"/p/views.py\", line 3\n    def f(:\n          ^\nSyntaxError: invalid syntax";
        assert_eq!(
            traceback_files(tb),
            [
                std::path::PathBuf::from("/p/app.py"),
                std::path::PathBuf::from("/p/views.py")
            ]
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }
}
