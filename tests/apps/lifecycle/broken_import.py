"""An app module that fails while it is imported."""

raise RuntimeError("lifecycle.broken_import fails to import on purpose")
