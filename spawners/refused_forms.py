"""The last refused spawn form of each server, shown again with its error on the next form.

Kept per server (user and server name): a refusal on a user's GPU server's form does not
come back on the form of their CPU server. Hub-wide and in memory: a refusal is only
worth showing on the page that follows it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Refusal:
    values: dict[str, str]                   # the form's values, to fill it again
    errors: tuple[tuple[str, str], ...]      # (field, message) of every wrong field


@dataclass
class RefusedForms:
    """{(user, server name): refusal}, each shown once and only within `keep_seconds`."""

    keep_seconds: float = 300.0
    _kept: dict[tuple[str, str], tuple[float, Refusal]] = field(default_factory=dict)

    def remember(self, user: str, server: str, payload: object, errors: tuple[tuple[str, str], ...]) -> None:
        """Keep the refused form's short string values (nothing else goes back into the page)."""
        if not isinstance(payload, dict):
            return
        values = {k: v for k, v in payload.items() if isinstance(k, str) and isinstance(v, str) and len(v) <= 64}
        self._kept[(user, server)] = (time.monotonic(), Refusal(values, tuple(errors)))

    def take(self, user: str, server: str) -> Refusal | None:
        """The refusal to show on this server's form now, forgotten once taken."""
        kept = self._kept.pop((user, server), None)
        if kept is None or time.monotonic() - kept[0] >= self.keep_seconds:
            return None
        return kept[1]


REFUSED = RefusedForms()
