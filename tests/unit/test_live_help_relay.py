"""Live help's server side (extensions/workbench/live_help.py): the hub URL it asks, and that ending the
help closes every open websocket of anyone but the server's owner."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from tornado import websocket

from aifactory.extensions.workbench import live_help


def test_the_hub_is_asked_about_this_very_server():
    env = {"JUPYTERHUB_API_URL": "http://10.77.0.1:8081/hub/api/", "JUPYTERHUB_USER": "student1"}
    assert live_help.hub_help_url(env) == "http://10.77.0.1:8081/hub/api/aifactory/users/student1/server/help"
    env["JUPYTERHUB_SERVER_NAME"] = "help"
    assert live_help.hub_help_url(env) == "http://10.77.0.1:8081/hub/api/aifactory/users/student1/servers/help/help"


class FakeSocket:
    def __init__(self, user):
        self.current_user, self.closed = user, None

    def close(self, code=None, reason=None):
        self.closed = (code, reason)


def test_ending_help_closes_the_others_websockets_and_keeps_the_owners(monkeypatch):
    monkeypatch.setattr(live_help, "_OPEN", set())
    owner = FakeSocket(SimpleNamespace(username="student1"))
    trainer = FakeSocket(SimpleNamespace(username="trainer1"))
    unknown = FakeSocket(None)  # whoever cannot be told apart from the owner is not the owner
    live_help._OPEN.update({owner, trainer, unknown})
    assert live_help.close_others("student1") == 2
    assert owner.closed is None
    assert trainer.closed == (live_help.CLOSE_ACCESS_ENDED, "live help ended") and unknown.closed is not None


def test_every_websocket_is_recorded_when_it_opens(monkeypatch):
    monkeypatch.setattr(live_help, "_OPEN", set())
    seen = []

    async def original_get(self, *args, **kwargs):
        seen.append(self)

    monkeypatch.setattr(websocket.WebSocketHandler, "get", original_get)
    live_help.track_websockets()
    live_help.track_websockets()  # once only, however often the extension loads
    socket = FakeSocket(SimpleNamespace(username="trainer1"))
    asyncio.run(websocket.WebSocketHandler.get(socket))
    assert seen == [socket] and socket in live_help._OPEN
