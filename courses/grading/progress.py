"""A one-line text progress bar on stderr (no dependency)."""

from __future__ import annotations

import time
from collections import Counter


def render(done: int, total: int, counts: dict[str, int], elapsed: float, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    tally = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {tally} {elapsed:.0f}s"


class Progress:
    def __init__(self, total: int, label: str, stream):
        self.total, self.label, self.stream = total, label, stream
        self.done, self.counts, self.started = 0, Counter(), time.monotonic()
        self._draw()

    def advance(self, status: str) -> None:
        self.done += 1
        self.counts[status] += 1
        self._draw()

    def _draw(self) -> None:
        line = render(self.done, self.total, self.counts, time.monotonic() - self.started)
        self.stream.write(f"\r{self.label} {line}")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
