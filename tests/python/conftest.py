"""Fixtures of the ferrocorn test suite: servers started as subprocesses.

``server_factory`` starts servers for one test (``server_factory(app, args)``)
and kills all of them afterwards; ``wsgi_server`` is one shared server of
``tests/apps/wsgi_apps.py`` (``--threads 4``) per test module. Which server is
tested comes from FERROCORN_TEST_SERVER (``ferrocorn``, the default, or
``gunicorn``), see helpers.py.
"""

import shutil

import pytest
from helpers import SERVER_KIND, ServerFactory


def pytest_report_header(config):
    return f"server under test: {SERVER_KIND} (FERROCORN_TEST_SERVER)"


@pytest.fixture
def server_factory():
    factory = ServerFactory()
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_server_factory():
    factory = ServerFactory()
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def wsgi_server(module_server_factory):
    """The router app of wsgi_apps.py, with 4 threads (gated streams need 2)."""
    return module_server_factory("wsgi_apps", ["--threads", "4"])


@pytest.fixture(scope="session")
def curl():
    path = shutil.which("curl")
    if path is None:
        pytest.skip("curl is not installed")
    return path
