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


def test_ending_help_closes_the_websockets_of_those_it_ended_for_only(monkeypatch):
    monkeypatch.setattr(live_help, "_OPEN", set())
    owner = FakeSocket(SimpleNamespace(username="student1"))
    trainer = FakeSocket(SimpleNamespace(username="trainer1"))
    admin = FakeSocket(SimpleNamespace(username="admin1"))  # let in by their role, not by the share
    unknown = FakeSocket(None)
    live_help._OPEN.update({owner, trainer, admin, unknown})
    assert live_help.close_for({"trainer1"}) == 1
    assert trainer.closed == (live_help.CLOSE_ACCESS_ENDED, "live help ended")
    assert owner.closed is None and admin.closed is None and unknown.closed is None


def test_whom_a_share_ended_for_comes_from_the_hubs_answers():
    assert live_help.ended(set(), {"sharing": False, "shared_with": [], "ended_for": ["trainer1"]}) == {"trainer1"}
    # a poll after sharing stopped elsewhere (another tab, the hub's API), or moved to another course's trainers
    assert live_help.ended({"trainer1"}, {"sharing": False, "shared_with": []}) == {"trainer1"}
    assert live_help.ended({"trainer1", "trainer2"}, {"shared_with": ["trainer2"]}) == {"trainer1"}
    assert live_help.ended({"trainer1"}, {"shared_with": ["trainer1"]}) == set()
    assert live_help.ended(set(), {"message": "refused"}) == set()


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
