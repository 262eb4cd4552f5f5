"""Every place the spawner reaches past JupyterHub's public Spawner API, in one version-checked spot.

A start the previous hub process left pending must show as a pending spawn (so the progress
page follows it and a stop cancels it), and be routed when it completes; JupyterHub has no
public API for either, so this module sets its private spawn flags, writes its database
objects and calls its proxy the way JupyterHub's own spawn does. These names were read from
JupyterHub SUPPORTED[0] up to (not including) SUPPORTED[1]; `internals(spawner)` refuses
other versions with a clear error instead of silently setting attributes nobody reads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import jupyterhub
from sqlalchemy.orm import object_session

SUPPORTED = ((5, 0), (7, 0))


class UnsupportedJupyterHub(RuntimeError):
    """The installed JupyterHub is outside the versions whose internals this module was written for."""


def _version(text: str) -> tuple[int, int]:
    major, minor = (text.split(".") + ["0"])[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def check_version(version: str = jupyterhub.__version__) -> None:
    """Raise UnsupportedJupyterHub unless SUPPORTED[0] <= version < SUPPORTED[1]."""
    low, high = SUPPORTED
    if not low <= _version(version) < high:
        raise UnsupportedJupyterHub(
            f"aifactory's spawner uses JupyterHub internals written for versions {low[0]}.{low[1]} to before "
            f"{high[0]}.{high[1]}; this is JupyterHub {version}: check spawners/jupyterhub_internals.py "
            "against its Spawner and User and widen SUPPORTED")


def internals(spawner: Any) -> SpawnInternals:
    """The one door to JupyterHub's internals for `spawner` (version-checked)."""
    check_version()
    return SpawnInternals(spawner)


@dataclass(frozen=True)
class SpawnInternals:
    """What JupyterHub keeps privately for one spawner, written the way JupyterHub itself does."""

    spawner: Any

    def save(self) -> None:
        """Write the spawner's state and user_options to the database now (JupyterHub does it after start)."""
        orm = self.spawner.orm_spawner
        if orm is not None:
            orm.state = self.spawner.get_state()
            orm.user_options = self.spawner.user_options
            object_session(orm).commit()  # the hub's session (Spawner.db is deprecated)

    def follow_resumed_start(self, resumed: asyncio.Future) -> None:
        """Show `resumed` as this server's pending spawn, as `User.spawn` does with its spawn future."""
        s = self.spawner
        s._check_pending, s._spawn_pending, s._spawn_future = False, True, resumed

        def done(future: asyncio.Future) -> None:  # as JupyterHub does: a failure stays readable for progress
            if future.cancelled() or future.exception() is None:
                s._spawn_future = None
            s._spawn_pending = False

        resumed.add_done_callback(done)

    def hand_to_startup_check(self) -> None:
        """The resumed server is up: JupyterHub's startup check (which called poll) verifies it next."""
        self.spawner._spawn_pending, self.spawner._check_pending = False, True

    async def route(self) -> None:
        """Add the server to the proxy: JupyterHub routes a server when its spawn ends, not after a check."""
        await self.spawner.user.settings["proxy"].add_user(self.spawner.user, self.spawner.name)
