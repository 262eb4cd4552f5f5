"""The steps of a server's start, in words, for JupyterHub's progress page.

The spawner records each step as it happens (`step`); the progress page, which may connect
at any time, replays every step from the start of this attempt and then follows new ones
until the server is starting (80 %).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import AsyncIterator

DONE_PERCENT = 80  # the server is starting: JupyterHub's own readiness check takes over


@dataclass
class StartLog:
    events: list[tuple[str, int]] = field(default_factory=list)
    previous_stop: str = ""  # why the previous server stopped, shown once before the new steps

    def begin(self, previous_stop: str = "") -> None:
        """A new attempt: its steps replace the last attempt's."""
        self.events = []
        if previous_stop:
            self.previous_stop = previous_stop

    def step(self, message: str, percent: int) -> None:
        """Record a step (the same step twice in a row is recorded once)."""
        if not self.events or self.events[-1] != (message, percent):
            self.events.append((message, percent))

    async def follow(self, tick: float = 0.5) -> AsyncIterator[dict]:
        """JupyterHub's progress events: every step so far, then each new one until DONE_PERCENT."""
        if self.previous_stop:
            yield {"progress": 1, "message": f"Previous server: {self.previous_stop}"}
            self.previous_stop = ""
        events, seen = self.events, 0
        while True:
            if self.events is not events:  # a new attempt began
                events, seen = self.events, 0
            for message, percent in events[seen:]:
                seen += 1
                yield {"progress": percent, "message": message}
                if percent >= DONE_PERCENT:
                    return
            await asyncio.sleep(tick)
