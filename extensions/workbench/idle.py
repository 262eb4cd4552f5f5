"""Whether a server's idle GPUs should be reclaimed: a pure decision on a recorded utilisation series.

Interface:

- `reclaim(series, kernels_idle_since, now, timeout_s, warn_s, threshold_percent=5.0, max_gap_s=MAX_GAP_S)
  -> Decision`: `series` is `(epoch seconds, max utilisation % over the job's GPUs)` samples (`sampler.Series`),
  `kernels_idle_since` the epoch second since which every kernel is idle (None: a kernel is busy, or that is
  not known), `now` the epoch second of the decision, `timeout_s` the site's `gpu_idle_timeout`.
- `Decision(action, seconds_left, reason)`: `action` is "keep", "warn" (`seconds_left` until the stop) or
  "stop" (`reason`, e.g. "its GPUs and kernels were idle for 1:00:00", for the home page).

The rules, so that a server is never stopped on too little evidence:
- GPUs count as idle only since the first sample of the latest unbroken run of samples below the threshold;
  a gap between samples longer than `max_gap_s` (a sampler that stalled, a busy node) breaks the run, as does
  a last sample older than `max_gap_s`: no evidence, no stop.
- Kernels must be idle too; busy kernels (None) keep the server.
- The server is idle since the later of the two; it is stopped when that lasted `timeout_s`, and warned in
  the `warn_s` before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

MAX_GAP_S = 300.0


@dataclass(frozen=True)
class Decision:
    """keep, warn (with the seconds left before the stop) or stop (with the reason for the home page)."""

    action: Literal["keep", "warn", "stop"]
    seconds_left: float | None = None
    reason: str = ""


def duration(seconds: float) -> str:
    """1:00:00 for an hour, as the site file writes `gpu_idle_timeout`."""
    whole = max(0, int(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def gpus_idle_since(series: Sequence[tuple[float, float]], now: float, threshold_percent: float,
                    max_gap_s: float) -> float | None:
    """The start of the latest unbroken run of idle samples up to `now`; None without recent idle evidence."""
    samples = sorted(sample for sample in series if sample[0] <= now)
    since = None
    later = now  # so that a last sample older than max_gap_s is a gap too: readings that stopped
    for time, utilization in reversed(samples):
        if utilization >= threshold_percent or later - time > max_gap_s:
            break
        since, later = time, time
    return since


def reclaim(series: Sequence[tuple[float, float]], kernels_idle_since: float | None, now: float,
            timeout_s: float, warn_s: float, threshold_percent: float = 5.0,
            max_gap_s: float = MAX_GAP_S) -> Decision:
    """keep, warn or stop a GPU server from its utilisation series and its kernels (see the module's rules)."""
    if kernels_idle_since is None:
        return Decision("keep", reason="a kernel is busy")
    gpus_since = gpus_idle_since(series, now, threshold_percent, max_gap_s)
    if gpus_since is None:
        return Decision("keep", reason="the GPUs are busy or their readings stopped")
    idle_for = now - max(gpus_since, kernels_idle_since)
    if idle_for >= timeout_s:
        return Decision("stop", 0.0, f"its GPUs and kernels were idle for {duration(timeout_s)}")
    if idle_for >= timeout_s - warn_s:
        left = timeout_s - idle_for
        return Decision("warn", left, f"its GPUs and kernels are idle; it stops in {duration(left)} "
                                      "unless a kernel or a GPU is used")
    return Decision("keep", reason=f"idle for {duration(idle_for)} of {duration(timeout_s)}")
