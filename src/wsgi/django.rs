//! What ferrocorn knows about Django, none of it needed to serve a Django app: finding the app
//! of a project started beside its `manage.py` without an APP (the `WSGI_APPLICATION` setting,
//! as `runserver` finds it), and in `--dev` the two things `runserver` adds around the app: the
//! URLconf imported at startup (so a broken view is a failed import with its traceback, and its
//! file is watched), and static files served from the app finders (`StaticFilesHandler`) while
//! `DEBUG` is on. Nothing here runs for an app that does not use Django.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::app::AppError;
use super::response::format_exception;

/// The app spec (`module:callable`) of the project whose settings module is `settings`:
/// `DJANGO_SETTINGS_MODULE` is set to it unless the environment already names one (as
/// manage.py's `setdefault` does), and the settings' `WSGI_APPLICATION` is the app.
pub fn app_spec(py: Python<'_>, settings: &str) -> Result<String, AppError> {
    let failed = |err: PyErr| AppError::DjangoSettings {
        settings: settings.to_string(),
        traceback: format_exception(py, &err).trim_end().to_string(),
    };
    let path: Option<String> = py
        .import("os")
        .and_then(|os| {
            os.getattr("environ")?
                .call_method1("setdefault", ("DJANGO_SETTINGS_MODULE", settings))?;
            py.import("django.conf")?
                .getattr("settings")?
                .getattr("WSGI_APPLICATION")?
                .extract()
        })
        .map_err(failed)?;
    Ok(match path.as_deref().and_then(|p| p.rsplit_once('.')) {
        Some((module, attr)) => format!("{module}:{attr}"),
        // Django's own fallback when the setting is None.
        None => "django.core.wsgi:get_wsgi_application()".to_string(),
    })
}

/// In `--dev`, for a Django app (settings configured): imports the URLconf now (when the
/// settings name one: an app may use Django's templates or ORM alone) and serves static files
/// as `runserver` does. Any other app comes back as it was.
pub fn for_dev(py: Python<'_>, app: Py<PyAny>) -> Result<Py<PyAny>, AppError> {
    let configured = py
        .import("sys")
        .and_then(|sys| sys.getattr("modules")?.contains("django.conf"))
        .unwrap_or(false)
        && py
            .import("django.conf")
            .and_then(|c| c.getattr("settings")?.getattr("configured")?.is_truthy())
            .unwrap_or(false);
    if !configured {
        return Ok(app);
    }
    let has_urlconf = py
        .import("django.conf")
        .and_then(|c| c.getattr("settings")?.hasattr("ROOT_URLCONF"))
        .unwrap_or(false);
    let urlconf = match has_urlconf {
        true => py
            .import("django.urls")
            .and_then(|urls| urls.call_method0("get_resolver")?.getattr("url_patterns"))
            .map(drop),
        false => Ok(()),
    };
    if let Err(err) = urlconf {
        return Err(AppError::Urlconf {
            traceback: format_exception(py, &err).trim_end().to_string(),
        });
    }
    let wrap = || -> PyResult<Option<Bound<'_, PyAny>>> {
        let settings = py.import("django.conf")?.getattr("settings")?;
        let installed = py
            .import("django.apps")?
            .getattr("apps")?
            .call_method1("is_installed", ("django.contrib.staticfiles",))?
            .is_truthy()?;
        if !installed || !settings.getattr("DEBUG")?.is_truthy()? {
            return Ok(None);
        }
        let handler = py
            .import("django.contrib.staticfiles.handlers")?
            .getattr("StaticFilesHandler")?;
        handler.call1((app.bind(py),)).map(Some)
    };
    match wrap() {
        Ok(Some(wrapped)) => {
            tracing::debug!("Serving STATIC_URL from the staticfiles finders, as runserver does");
            Ok(wrapped.unbind())
        }
        Ok(None) => Ok(app),
        Err(err) => {
            tracing::warn!(
                "Cannot serve Django's static files: {}",
                format_exception(py, &err).trim_end()
            );
            Ok(app)
        }
    }
}

/// `django.get_version()`, when Django is imported.
pub fn version(py: Python<'_>) -> Option<String> {
    let modules = py.import("sys").ok()?.getattr("modules").ok()?;
    let modules = modules.cast::<PyDict>().ok()?;
    let django = modules.get_item("django").ok()??;
    django.call_method0("get_version").ok()?.extract().ok()
}
