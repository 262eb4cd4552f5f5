"""The class progress page of a course's formgrader: ``/services/formgrader-<id>/progress``.

Per assignment, how many of the course's students fetched it, submitted it and were graded, and
a histogram of their scores, kept current without reloading: the page asks ``progress.json``
every `REFRESH_SECONDS` and redraws. A Jupyter server extension of the formgrader
(`formgrader_safety.server_settings` enables it), so it inherits the formgrader's gate: only the
course's trainers (their role's ``access:services!service=formgrader-<id>``) and admins get in,
everyone else gets JupyterHub's 403, and it reads the exchange and the gradebook as the course's
grader account, with the kernel's permissions (`aifactory.courses.class_progress` says where
each number comes from).

The reading (a directory walk and a SQLite gradebook) runs in a worker thread, never on the
server's event loop, and one reading serves every request for `CACHE_SECONDS`: a class of
trainers with the page open costs one reading per few seconds, whatever their number.

The page runs only its own inline script, by hash (`page_policy`); what it shows of the data
(assignment names come from the trainers' releases) is set as text, never as markup.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

EXTENSION = "aifactory.hub.class_progress"
CACHE_SECONDS = 5.0
REFRESH_SECONDS = 5
TEMPLATE = Path(__file__).resolve().parent / "templates" / "class_progress.html"

_INLINE_SCRIPT = re.compile(r"<script(?P<attrs>(?:\s[^>]*)?)>(?P<body>.*?)</script>", re.DOTALL | re.IGNORECASE)


class Cached:
    """The last value of an expensive reading, for `seconds`; concurrent askers share one reading.

    A failed reading is not kept: the next ask tries again."""

    def __init__(self, read: Callable[[], Awaitable[Any]], seconds: float = CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self._read, self._seconds, self._clock = read, seconds, clock
        self._value: Any = None
        self._at = float("-inf")
        self._running: asyncio.Future | None = None

    async def get(self) -> Any:
        if self._clock() - self._at < self._seconds:
            return self._value
        if self._running is None:
            self._running = asyncio.ensure_future(self._refresh())
        running = self._running
        return await asyncio.shield(running)

    async def _refresh(self) -> Any:
        try:
            value = await self._read()
            self._value, self._at = value, self._clock()
            return value
        finally:
            self._running = None


def json_for_script(data: Any) -> str:
    """JSON safe inside <script type="application/json">: no '<', '>' or '&' that could end it. Pure."""
    return (json.dumps(data, sort_keys=True)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page_policy(page: str) -> str:
    """The page's Content-Security-Policy: its inline scripts by hash (data blocks run nothing and need
    none), styles and the formgrader's stylesheet from itself, requests to itself only. Pure."""
    hashes = sorted({_sha256(m["body"]) for m in _INLINE_SCRIPT.finditer(page)
                     if "application/json" not in m["attrs"].lower() and "src=" not in m["attrs"].lower()})
    return "; ".join([
        "default-src 'none'",
        "script-src " + (" ".join(hashes) if hashes else "'none'"),
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ])


def render_page(data: dict, base_url: str, xsrf: str = "", refresh_seconds: int = REFRESH_SECONDS) -> str:
    """The page's HTML with `data` (ClassProgress.as_json()) drawn by its script at once, and the `xsrf`
    token its requests for the data carry (JupyterHub checks it on every cookie-authenticated fetch).
    Pure but for reading the template."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(TEMPLATE.read_text())
    return template.render(course=data["course"], title=data["title"], base_url=base_url.rstrip("/"),
                           data_json=json_for_script(data), refresh_ms=refresh_seconds * 1000, xsrf=xsrf)


def _reader(course_id: str) -> Callable[[], Awaitable[dict]]:
    def read() -> dict:
        from aifactory.courses.class_progress import class_progress
        from aifactory.site import load_site_cached

        data = class_progress(load_site_cached(), course_id).as_json()
        data["read_at"] = time.time()
        return data

    async def in_thread() -> dict:
        return await asyncio.get_running_loop().run_in_executor(None, read)

    return in_thread


def _handlers(cache: Cached, base_url: str):
    from jupyter_server.base.handlers import APIHandler, JupyterHandler
    from tornado import web

    class ProgressPage(JupyterHandler):
        """The page, drawn from the data it carries; its script keeps it current."""

        @web.authenticated
        async def get(self):
            xsrf = self.xsrf_token
            page = render_page(await cache.get(), base_url, xsrf.decode() if isinstance(xsrf, bytes) else xsrf)
            self._policy = page_policy(page)
            self.set_header("Content-Security-Policy", self._policy)
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.set_header("Cache-Control", "no-store")
            self.finish(page)

        @property
        def content_security_policy(self) -> str:
            return getattr(self, "_policy", "default-src 'none'; frame-ancestors 'none'")

    class ProgressData(APIHandler):
        """What the page shows, as JSON (its polling is no activity of the formgrader's)."""

        _track_activity = False

        @web.authenticated
        async def get(self):
            self.set_header("Cache-Control", "no-store")
            self.finish(json.dumps(await cache.get(), sort_keys=True))

    return [(f"{base_url}progress", ProgressPage), (rf"{base_url}progress\.json", ProgressData)]


PROGRESS_LINK = '<li role="presentation"><a href="{{ base_url }}/progress">Class progress</a></li>'


def sidebar_with_link(base: str) -> str:
    """nbgrader's base.tpl with the class progress last in its sidebar, after the block each page
    fills (so on every page); the template as it was if it no longer has that shape. Pure."""
    head, block, tail = base.partition("{%- block sidebar -%}")
    inside, end, rest = tail.partition("</ul>")
    return head + block + inside + PROGRESS_LINK + end + rest if block and end else base


def with_progress_link(loader, env):
    """nbgrader's template loader whose base.tpl, which every formgrader page extends, links this page."""
    from jinja2 import ChoiceLoader, DictLoader

    source, _, _ = loader.get_source(env, "base.tpl")
    return ChoiceLoader([DictLoader({"base.tpl": sidebar_with_link(source)}), loader])


def _link_from_formgrader(serverapp, tries: int = 120) -> None:
    """Add the link to the formgrader's pages once nbgrader's extension, loaded after this one, made its
    templates; as a server extension itself, jupyterhub-singleuser lets the loop run while the others
    load, so this looks again every half second, for a minute at most."""
    env = serverapp.web_app.settings.get("nbgrader_jinja2_env")
    if env is None:
        if tries > 0:
            serverapp.io_loop.call_later(0.5, _link_from_formgrader, serverapp, tries - 1)
        else:
            serverapp.log.warning("aifactory: no nbgrader formgrader here: its pages do not link the class progress")
        return
    env.loader = with_progress_link(env.loader, env)
    serverapp.log.info("aifactory: the formgrader's pages link the class progress")


def _jupyter_server_extension_points():
    return [{"module": EXTENSION}]


def _load_jupyter_server_extension(serverapp) -> None:
    from jupyter_server.utils import url_path_join

    course_id = serverapp.config.get("CourseDirectory", {}).get("course_id", "")
    if not course_id:
        serverapp.log.warning("aifactory: no CourseDirectory.course_id: no class progress page")
        return
    base_url = url_path_join(serverapp.web_app.settings["base_url"], "/")
    serverapp.web_app.add_handlers(".*$", _handlers(Cached(_reader(course_id)), base_url))
    serverapp.io_loop.add_callback(_link_from_formgrader, serverapp)
    serverapp.log.info("aifactory: class progress of %s at %sprogress", course_id, base_url)
