"""The hub endpoint through which a starting server reports its port, and nothing else.

batchspawner's `/api/batchspawner` handler sets any spawner attribute named in
the request body, for any of the user's servers. Importing this module takes
that handler out of JupyterHub's API routes; `PortHandler` (mounted at
`/hub/api/aifactory/port` through `JupyterHub.extra_handlers`) accepts exactly
`{"port": <1-65535>}` and only from the token of the spawner it sets, and only
while that spawner waits for its port (the same port again is accepted: a report
whose answer was lost to a hub restart is repeated). The spawner keeps only the
token's SHA-256 in its state, so the owner is recognised after a restart too.
"""

from __future__ import annotations

import hashlib
import json

import batchspawner.api  # noqa: F401  (registers the handler we take out below)
from jupyterhub import apihandlers
from jupyterhub.apihandlers import APIHandler
from tornado import web

PORT_PATH = r"/api/aifactory/port"


def _without_batchspawner_handler() -> None:
    apihandlers.default_handlers[:] = [
        h for h in apihandlers.default_handlers if h[1] is not batchspawner.api.BatchSpawnerAPIHandler
    ]


_without_batchspawner_handler()


def token_digest(token: str) -> str:
    """SHA-256 of an API token, hex: what a spawner saves to recognise its job's token."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_port_body(body: object) -> int:
    """The port of a report body, or ValueError: exactly {"port": int in 1..65535}."""
    if not isinstance(body, dict) or set(body) != {"port"}:
        raise ValueError('the body must be exactly {"port": <number>}')
    port = body["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError("port must be a whole number from 1 to 65535")
    return port


class PortHandler(APIHandler):
    """POST {"port": N} with a server's own API token."""

    @web.authenticated
    def post(self):
        user = self.current_user
        token = self.get_auth_token() or ""
        spawners = getattr(user, "spawners", None)
        if not token or spawners is None:
            raise web.HTTPError(403, "only a server's own token may report its port")
        spawner = next((s for s in spawners.values() if hasattr(s, "owns_token") and s.owns_token(token)), None)
        if spawner is None:
            raise web.HTTPError(403, "this token belongs to no server waiting for its port")
        try:
            body = json.loads(self.request.body or b"null")
            port = parse_port_body(body)
        except ValueError as error:
            raise web.HTTPError(400, str(error)) from None
        if not spawner.report_port(port):
            raise web.HTTPError(409, "this server is not waiting for its port")
        self.set_status(201)
        self.finish(json.dumps({"port": port}))


handlers = [(PORT_PATH, PortHandler)]
