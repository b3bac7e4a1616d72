"""WSGI entry point: ``ferrocorn --chdir tests/apps/djangoproject myproject.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")

application = get_wsgi_application()
