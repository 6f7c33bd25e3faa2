"""The server `ketamine-outcomes serve` starts: Streamlit's ASGI app (`st.App`) for main.py, with one middleware.

Why a middleware: for a path Streamlit does not know, its server answers with the app's index.html (so the
page can say "page not found"), but index.html loads its scripts by relative URLs ("./static/js/…"). Under a
nested path such as /views/overview.py or /response/extra/path those resolve to /views/static/js/…, which
get index.html again (text/html), so the browser refuses the scripts and the page stays blank.

`NestedPathRedirect` sends a browser that asks for a nested path that is none of Streamlit's own routes to the
same path as a single segment, its slashes escaped (/views/overview.py -> /views%2Foverview.py, the query kept).
There the relative URLs resolve to the server's root, the app loads, and Streamlit reports the path as the
page asked for ("views/overview.py"), so main.py shows its "page not found" screen with links to every page,
as for an unknown top-level path. Streamlit's own routes (_stcore, static, media, component, app/static, auth,
oauth2callback) pass untouched; so does every path of one segment (Streamlit's pages and unknown names).

`streamlit run` finds `app` below (an `st.App`) and serves it with uvicorn, with the same command-line
settings as before; AppTest and `streamlit run dashboard/app/main.py` keep running main.py directly.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import quote, unquote

import streamlit as st
from starlette.middleware import Middleware

# First path segments Streamlit 1.67 serves itself (web/server/starlette/starlette_routes.py and
# starlette_auth_routes.py): never redirected, whatever follows them.
STREAMLIT_ROUTES = frozenset({"_stcore", "static", "media", "component", "app", "auth", "oauth2callback"})

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]


def flattened_path(path: str, root_path: str = "") -> str | None:
    """The single-segment path a nested unknown path is sent to (slashes escaped), or None to leave it alone.

    `path` is the decoded request path; `root_path` the app's prefix (server.baseUrlPath), kept in front; a path
    outside it is left alone."""
    if root_path and not (path == root_path or path.startswith(root_path + "/")):
        return None
    rest = path[len(root_path):]
    segments = [s for s in rest.split("/") if s]
    if len(segments) < 2 or segments[0] in STREAMLIT_ROUTES or rest.endswith("/"):
        return None  # one segment: Streamlit decides; a trailing slash: Streamlit's own redirect comes first
    return f"{root_path.rstrip('/')}/" + quote("/".join(segments), safe="")


def unquote_plus_slash(raw: str) -> str:
    """A raw request path decoded except for escaped slashes ("%2F" stays), so segments are the browser's."""
    return "%2F".join(unquote(part) for part in re.split("%2F", raw, flags=re.IGNORECASE))


class NestedPathRedirect:
    """ASGI middleware: a GET or HEAD for a nested unknown path gets a redirect to `flattened_path` (see the
    module docstring); every other request goes to Streamlit unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[..., Awaitable[Any]],
                        send: Callable[..., Awaitable[Any]]) -> None:
        if scope.get("type") == "http" and scope.get("method") in ("GET", "HEAD"):
            base = scope.get("root_path") or "/" + str(st.get_option("server.baseUrlPath") or "").strip("/")
            # the raw path, as the browser sent it: uvicorn decodes %2F in "path", so the redirect's own target
            # would look nested again and be redirected forever
            raw = scope.get("raw_path")
            path = unquote_plus_slash(raw.decode("latin-1")) if raw else scope.get("path", "")
            target = flattened_path(path, base.rstrip("/"))
            if target is not None:
                query = scope.get("query_string", b"").decode("latin-1")
                # 307 keeps the method; no caching, so a page added later under that path is found.
                await send({"type": "http.response.start", "status": 307,
                            "headers": [(b"location", (target + (f"?{query}" if query else "")).encode("latin-1")),
                                        (b"cache-control", b"no-cache"), (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def serving(_app: Any) -> AsyncIterator[None]:
    """While the server serves: what the first visitor would wait for is done before they come
    (`ui.start_warming_default_view`: the pages' imports, the database opened, every page's opening for the
    default filters), after which, or after the first page if that comes first, the startup heap is settled
    (`ui.settle_startup_heap`). Started here, when serving starts, not when this module is imported (tests
    import it into their own process)."""
    from dashboard.app import ui

    ui.SERVED = True
    ui.start_warming_default_view()
    try:
        yield
    finally:
        ui.SERVED = False


app = st.App(Path(__file__).resolve().with_name("main.py"), middleware=[Middleware(NestedPathRedirect)],
             lifespan=serving)
