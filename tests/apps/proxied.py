"""wsgi_apps behind werkzeug's ProxyFix, as an app behind nginx is deployed (test_nginx.py).

ferrocorn, like gunicorn, gives the app the socket peer as REMOTE_ADDR (nothing for a unix
socket) and leaves X-Forwarded-For to the app; ProxyFix (x_for=1: one proxy, nginx) takes the
client address from it. What ferrocorn itself set is kept under ``server.*`` keys.
"""

from werkzeug.middleware.proxy_fix import ProxyFix
from wsgi_apps import application as routes

_fixed = ProxyFix(routes, x_for=1, x_proto=1, x_host=1)


def app(environ, start_response):
    environ["server.REMOTE_ADDR"] = environ.get("REMOTE_ADDR")
    environ["server.wsgi.url_scheme"] = environ["wsgi.url_scheme"]
    return _fixed(environ, start_response)
