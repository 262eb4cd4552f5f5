"""Parsing and formatting of the two quantities Slurm speaks in: memory and walltime.

Memory is kept as whole MiB, walltime as whole minutes, so comparisons are
plain integer comparisons and Slurm strings are produced by one function each.
"""

from __future__ import annotations

import re

_MEMORY = re.compile(r"^\s*(\d+)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_FACTOR_MIB = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_memory_mib(value: str | int) -> int:
    """'4G' -> 4096; '512M' -> 512; a bare integer is MiB (Slurm's default unit)."""
    if isinstance(value, bool):
        raise ValueError(f"memory must be like '4G' or '512M', not {value!r}")
    if isinstance(value, int):
        mib = value
    else:
        match = _MEMORY.match(str(value))
        if not match:
            raise ValueError(f"memory must be like '4G' or '512M', not {value!r}")
        number, unit = match.groups()
        mib = int(int(number) * _FACTOR_MIB[unit.upper()])
    if mib <= 0:
        raise ValueError(f"memory must be positive, not {value!r}")
    return mib


def format_memory(mib: int) -> str:
    """4096 -> '4G'; 1536 -> '1536M' (Slurm's --mem syntax)."""
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$")


def parse_walltime_minutes(value: str | int) -> int:
    """Slurm time formats -> minutes.

    Accepts 'MM', 'HH:MM:SS', 'D-HH', 'D-HH:MM', 'D-HH:MM:SS' and integer minutes.
    Seconds are rounded up to the next minute.
    """
    if isinstance(value, bool):
        raise ValueError(f"walltime must be like '2:00:00' or '1-00:00:00', not {value!r}")
    if isinstance(value, int):
        minutes = value
    else:
        text = str(value).strip()
        match = _WALLTIME.match(text)
        if not match:
            raise ValueError(f"walltime must be like '2:00:00' or '1-00:00:00', not {value!r}")
        days, first, second, third = match.groups()
        if days is not None:
            # D-HH[:MM[:SS]]
            hours, mins, secs = int(first), int(second or 0), int(third or 0)
            minutes = int(days) * 1440 + hours * 60 + mins + (1 if secs else 0)
        elif third is not None:
            # HH:MM:SS
            minutes = int(first) * 60 + int(second) + (1 if int(third) else 0)
        elif second is not None:
            # MM:SS
            minutes = int(first) + (1 if int(second) else 0)
        else:
            minutes = int(first)
    if minutes <= 0:
        raise ValueError(f"walltime must be positive, not {value!r}")
    return minutes


def format_walltime(minutes: int) -> str:
    """90 -> '01:30:00'; 1500 -> '1-01:00:00' (Slurm's --time syntax)."""
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    clock = f"{hours:02d}:{mins:02d}:00"
    return f"{days}-{clock}" if days else clock
