"""Extending a running server's walltime: the decision, a pure function of the limits, and its words.

A user asks for `minutes` more. `extension` allows it only if the new time limit stays within the
profile's maximum and the partition's MaxTime, and the added time on the server's CPUs and GPUs
fits in what is left of its project's allocation; otherwise it says which limit, and how much
more would still fit. The site's `limits.max_session` is a limit too: the hub's culler stops older
servers whatever their walltime. Where two time limits are passed, the tighter one is named (the profile's on a
tie): it is the one that says how much more is possible. `walltime_api` does the I/O around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from aifactory.site.units import format_walltime

Reason = Literal["profile_maximum", "session_maximum", "allocation", "partition_limit", "not_running"]
# A body asking for more than a year is malformed, not an extension to weigh against the limits.
MAX_MINUTES = 366 * 1440


@dataclass(frozen=True)
class Allowed:
    new_limit_minutes: int
    added_minutes: int


@dataclass(frozen=True)
class Refused:
    reason: str  # a Reason, or what walltime_api adds for Slurm's own refusals
    message: str  # a sentence for the user: which limit, and how much more would fit


def parse_body(body: object) -> int:
    """The minutes to add from a request body, or ValueError: exactly {"minutes": int in 1..MAX_MINUTES}."""
    if not isinstance(body, dict) or set(body) != {"minutes"}:
        raise ValueError('The body must be exactly {"minutes": <whole number of minutes to add>}.')
    minutes = body["minutes"]
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_MINUTES:
        raise ValueError(f"minutes must be a whole number from 1 to {MAX_MINUTES}.")
    return minutes


def duration(minutes: int) -> str:
    """90 -> '1 hour 30 minutes'; 120 -> '2 hours'; 1 -> '1 minute'."""
    hours, rest = divmod(minutes, 60)
    parts = [f"{hours} hour{'s' if hours != 1 else ''}"] if hours else []
    if rest or not hours:
        parts.append(f"{rest} minute{'s' if rest != 1 else ''}")
    return " ".join(parts)


def _time_refusal(kind: str, what: str, maximum: int, current: int) -> Refused:
    left = maximum - current
    more = f"so at most {format_walltime(left)} more" if left > 0 else "so it cannot be extended"
    return Refused(kind, f"{what} allows at most {format_walltime(maximum)}; this server already has "
                         f"{format_walltime(current)}, {more}.")


def _budget(hours_left: float) -> int:
    """Whole unit-minutes (core- or GPU-minutes) left: integers from here on, so no rounding allows too much."""
    return math.floor(hours_left * 60)


def _allocation_refusal(project: str, unit: str, left: float, add: int, count: int, device: str,
                        fits: int, still: int) -> Refused:
    need = count * (still + add) / 60
    more = f", so at most {duration(fits)} more" if fits >= 1 else ""
    asked = f"the {duration(still)} this server still has and {duration(add)} more" if still else f"{duration(add)} more"
    return Refused("allocation", f"{project} has {max(left, 0.0):.1f} {unit} left; {asked} on "
                                 f"{count} {device}{'s' if count != 1 else ''} would need {need:.1f}{more}.")


def extension(current_limit_min: int, add_min: int, profile_max_min: int, partition_max_min: int | None,
              cpus: int, gpus: int, remaining_cpu_hours: float | None, remaining_gpu_hours: float | None, *,
              profile: str = "this", partition: str = "this", project: str = "The project",
              session_max_min: int | None = None, still_to_run_min: int = 0) -> Allowed | Refused:
    """Whether a server with `current_limit_min` may get `add_min` more minutes (None: no such limit).

    `still_to_run_min`: the minutes of its current limit the job has not run yet. The allocation left is what
    accounting counted so far; those minutes will be charged too, so they and the extension must fit in it
    (else one extension after another, each fitting on its own, would spend the allocation many times)."""
    new = current_limit_min + add_min
    limits = [(profile_max_min, 0, "profile_maximum", f"The {profile} profile")]
    if partition_max_min is not None:
        limits.append((partition_max_min, 1, "partition_limit", f"The {partition} partition (its MaxTime in Slurm)"))
    if session_max_min is not None:  # the hub's culler stops any server older than limits.max_session
        limits.append((session_max_min, 2, "session_maximum", "This site's session limit (limits.max_session)"))
    maximum, _, kind, what = min(limits)
    if new > maximum:
        return _time_refusal(kind, what, maximum, current_limit_min)
    # Each allocation: how many minutes it still pays for on this server; the tighter one is named.
    budgets = [(max(_budget(left), 0) // count - still_to_run_min, order, unit, left, count, device)
               for order, (left, count, unit, device) in enumerate(((remaining_cpu_hours, cpus, "core-hours", "CPU"),
                                                                    (remaining_gpu_hours, gpus, "GPU-hours", "GPU")))
               if count and left is not None]
    if budgets and add_min > min(budgets)[0]:
        fits, _, unit, left, count, device = min(budgets)
        return _allocation_refusal(project, unit, left, add_min, count, device, fits, still_to_run_min)
    return Allowed(new, add_min)


def ends_at(start: datetime | None, limit_minutes: int) -> datetime | None:
    """When a job started at `start` (Slurm's local time, naive) reaches its limit, in UTC; None if unknown."""
    if start is None or limit_minutes <= 0:
        return None
    aware = start if start.tzinfo else start.astimezone()  # a naive time is this machine's local time
    return aware.astimezone(timezone.utc) + timedelta(minutes=limit_minutes)
