"""The operator view of ``csms serve``: status API, live dashboard and Prometheus ``/metrics``.

Turned on by an ``[http]`` section in the site config; :class:`csms.runtime.app.CentralSystemApp` starts a
:class:`~csms.web.server.WebServer` on the same event loop and hands it a :class:`~csms.web.view.SiteView`,
all the web layer reads (it never imports the app). :func:`dashboard_url` gives the link that logs
a browser in once (the demo prints it).
"""

from __future__ import annotations

from urllib.parse import quote

__all__ = ["dashboard_url", "WebServer"]


def dashboard_url(host: str, port: int, token: str) -> str:
    """The dashboard's address with a one-time login link: ``http://HOST:PORT/#token=TOKEN``.

    The token travels in the URL fragment, which browsers never send to a server (so it stays out of
    proxies' and servers' logs); the page moves it into the browser's storage and removes it from the
    address bar and history on first load. A wildcard listen address becomes 127.0.0.1.
    """
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/#token={quote(token, safe='')}"


def __getattr__(name: str):
    # aiohttp is imported only when the server is wanted, so dashboard_url stays cheap to import.
    if name == "WebServer":
        from .server import WebServer
        return WebServer
    raise AttributeError(name)
