"""ferrocorn: a WSGI HTTP server in Rust, with gunicorn's command line.

Run it as ``ferrocorn myproject.wsgi:application`` or ``python -m ferrocorn``.
"""

from ferrocorn._ferrocorn import RequestTimeout, __version__

__all__ = ["RequestTimeout", "__version__"]
