"""The last refused spawn form of each server, shown again with its error on the next form.

Kept per server (user and server name): a refusal on a user's GPU server's form does not
come back on the form of their CPU server. Hub-wide and in memory: a refusal is only
worth showing on the page that follows it.

One wrinkle of JupyterHub (handlers/pages.py, 5.x and 6.x): the page that answers a refused
POST renders the form with the user's *default* spawner, whichever server the POST was for
(the page's form still posts to that server). So the default server's form also takes the
user's refusal of another server made within `rerender_seconds`: that page, and no later one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Refusal:
    values: dict[str, str]                   # the form's values, to fill it again
    errors: tuple[tuple[str, str], ...]      # (field, message) of every wrong field


@dataclass
class RefusedForms:
    """{(user, server name): refusal}, each shown once and only within `keep_seconds`."""

    keep_seconds: float = 300.0
    rerender_seconds: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _kept: dict[tuple[str, str], tuple[float, Refusal]] = field(default_factory=dict)

    def remember(self, user: str, server: str, payload: object, errors: tuple[tuple[str, str], ...]) -> None:
        """Keep the refused form's short string values (nothing else goes back into the page)."""
        if not isinstance(payload, dict):
            return
        values = {k: v for k, v in payload.items() if isinstance(k, str) and isinstance(v, str) and len(v) <= 64}
        self._kept[(user, server)] = (self.clock(), Refusal(values, tuple(errors)))

    def take(self, user: str, server: str) -> Refusal | None:
        """The refusal to show on this server's form now, forgotten once taken."""
        now = self.clock()
        kept = self._kept.pop((user, server), None)
        if kept is None and server == "":  # JupyterHub's answer to a refused POST of a named server
            fresh = [key for key, (at, _) in self._kept.items() if key[0] == user and now - at < self.rerender_seconds]
            kept = self._kept.pop(max(fresh, key=lambda key: self._kept[key][0])) if fresh else None
        if kept is None or now - kept[0] >= self.keep_seconds:
            return None
        return kept[1]


REFUSED = RefusedForms()
