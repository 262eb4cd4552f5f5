"""Live help inside the user's server: JupyterLab's "Get live help" asks the hub through here.

    GET | POST | DELETE  {base_url}aifactory/help   ->   the hub's /hub/api/aifactory/users/<user>/servers/<server>/help

The lab runs on the server's own origin (`hub.subdomain_host`), where the hub's API is out of reach of
the page (another origin, no CORS); so this server side asks the hub with the server's own token
(`JUPYTERHUB_API_TOKEN`: it may access this server and nothing else), and the hub decides everything
(hub/live_help.py: only the owner, only the course's trainers). Here only the server's owner may ask:
a trainer the server is shared with has full access to the server but gets 403 from this endpoint.

When sharing stops, the trainers must be out at once, not at their next page load: this process caches
the hub's word on a cookie for `HubAuth.cache_max_age` (five minutes) and keeps open websockets
(kernels, terminals, jupyter-collaboration's documents) that were authorised when they opened. So once
the hub says whom a share ended for (its answer to a DELETE, or a later answer that no longer lists
someone it listed, when sharing ended elsewhere), the cache is emptied and every websocket of those
people is closed; their reconnection asks the hub again, which refuses (it removed their OAuth tokens
for this server). Others' connections (an admin, trainers of a course that lets them open students'
servers) are left alone. A websocket is recorded with its user when it opens (`track_websockets`).
"""

from __future__ import annotations

import json
import os
import weakref
from typing import Any, Callable, Iterable, Mapping

from jupyter_server.base.handlers import APIHandler
from tornado import web, websocket
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

# Close code for a websocket whose user lost access (4000-4999: the application's own).
CLOSE_ACCESS_ENDED = 4403

_OPEN: "weakref.WeakSet[Any]" = weakref.WeakSet()
# Whom the hub last said this server is shared with.
_SHARED_WITH: set[str] = set()


def hub_help_url(env: Mapping[str, str]) -> str:
    """The hub's live-help URL of this server, from what JupyterHub puts into the server's environment."""
    api = env["JUPYTERHUB_API_URL"].rstrip("/")
    user, server = env["JUPYTERHUB_USER"], env.get("JUPYTERHUB_SERVER_NAME", "")
    where = f"servers/{server}" if server else "server"
    return f"{api}/aifactory/users/{user}/{where}/help"


def username(user: Any) -> str:
    """The name of jupyter-server's user (JupyterHub's identity provider gives the hub's user name)."""
    return str(getattr(user, "username", "") or (user.get("name", "") if isinstance(user, dict) else ""))


def of_users(handlers: Iterable[Any], names: set[str]) -> list[Any]:
    """The open websockets of the people `names`."""
    return [h for h in handlers if username(getattr(h, "current_user", None)) in names]


def ended(before: set[str], answer: Mapping[str, Any]) -> set[str]:
    """Whom a share ended for, from the hub's answer: those it names (`ended_for`, a DELETE's answer) and
    those it shared with `before` but no longer lists (sharing stopped elsewhere, or the course changed)."""
    return set(answer.get("ended_for") or ()) | (before - set(answer.get("shared_with") or ()))


def track_websockets() -> None:
    """Record every websocket of this server when it opens (kernels, terminals, collaborative documents):
    tornado's `WebSocketHandler.get`, which each of them reaches, after jupyter-server has authenticated it."""
    base = websocket.WebSocketHandler
    if getattr(base.get, "_aifactory_tracked", False):
        return
    original: Callable = base.get

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        _OPEN.add(self)
        return await original(self, *args, **kwargs)

    get._aifactory_tracked = True  # type: ignore[attr-defined]
    base.get = get  # type: ignore[method-assign]


def close_for(names: set[str]) -> int:
    """Close every open websocket of the people `names`; how many were closed."""
    closing = of_users(list(_OPEN), names)
    for handler in closing:
        try:
            handler.close(CLOSE_ACCESS_ENDED, "live help ended")
        except Exception:  # already closing: nothing left to end
            pass
    return len(closing)


class HelpRelay(APIHandler):
    """The owner's way to the hub's live-help endpoint."""

    def _owner_only(self) -> str:
        owner = os.environ.get("JUPYTERHUB_USER", "")
        if not owner or username(self.current_user) != owner:
            raise web.HTTPError(403, "Only the owner of this server may share it or stop sharing it.")
        return owner

    async def _relay(self, method: str) -> tuple[int, dict]:
        body = None
        if method == "POST":
            try:
                body = json.dumps(json.loads(self.request.body or b"{}"))
            except ValueError:
                raise web.HTTPError(400, "The body must be JSON.") from None
        request = HTTPRequest(hub_help_url(os.environ), method=method, body=body, request_timeout=30,
                              headers={"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}",
                                       "Content-Type": "application/json"})
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as error:
            if error.response is None:
                raise web.HTTPError(502, f"The hub did not answer: {error}") from None
            response = error.response
        try:
            return response.code, json.loads(response.body or b"{}")
        except ValueError:
            return response.code, {"message": f"The hub answered {response.code}.", "reason": "hub"}

    async def _answer(self, method: str) -> None:
        self._owner_only()
        status, body = await self._relay(method)
        if status == 200:
            gone = ended(_SHARED_WITH, body)
            _SHARED_WITH.clear()
            _SHARED_WITH.update(body.get("shared_with") or ())
            if gone:
                hub_auth = getattr(self.identity_provider, "hub_auth", None) or self.settings.get("hub_auth")
                if hub_auth is not None:
                    hub_auth.cache.clear()  # every cookie is checked with the hub again
                closed = close_for(gone)
                self.log.info("Live help ended for %s: %d connection(s) closed", ", ".join(sorted(gone)), closed)
        self.set_status(status)
        self.finish(json.dumps(body))

    @web.authenticated
    async def get(self) -> None:
        await self._answer("GET")

    @web.authenticated
    async def post(self) -> None:
        await self._answer("POST")

    @web.authenticated
    async def delete(self) -> None:
        await self._answer("DELETE")


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "aifactory.extensions.workbench.live_help"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Only in a server JupyterHub started (its API and token in the environment)."""
    if "JUPYTERHUB_API_URL" not in os.environ:
        return
    track_websockets()
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [(f"{base.rstrip('/')}/aifactory/help", HelpRelay)])
