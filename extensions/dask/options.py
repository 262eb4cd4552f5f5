"""What a user may ask of a Dask cluster, checked against the profile it runs under.

`DaskOptions` is the typed, validated request; `choose_options` turns a raw
request (from the widget, the Python API or the labextension) into one, or
refuses it with sentences a person can act on. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field

from aifactory.site.schema import Partition, Profile
from aifactory.site.units import format_memory, format_walltime, parse_memory_mib, parse_walltime_minutes

FIELDS = ("workers", "cores", "memory", "gpus", "walltime", "adaptive_min", "adaptive_max", "project")


class DaskOptions(BaseModel):
    """One worker = one Slurm job with `cores` CPUs, `memory` MiB and `gpus` GPUs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int = Field(0, ge=0, description="Workers to start now (fixed size).")
    cores: int = Field(ge=1, description="CPUs per worker.")
    memory: int = Field(ge=1, description="Memory per worker in MiB.")
    gpus: int = Field(0, ge=0, description="GPUs per worker.")
    walltime: int = Field(ge=1, description="Walltime per worker job in minutes.")
    adaptive_min: int | None = Field(None, ge=0, description="Adaptive minimum; None = fixed size.")
    adaptive_max: int | None = Field(None, ge=0, description="Adaptive maximum; None = fixed size.")
    project: str | None = Field(None, description="Slurm account; None = the user's first.")

    @property
    def adaptive(self) -> bool:
        return self.adaptive_max is not None


class OptionsRefused(ValueError):
    """A request that does not fit the profile; `reasons` are whole sentences."""

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__(" ".join(reasons))


def max_workers(partition: Partition, cores: int) -> int:
    """How many workers of `cores` CPUs fit on the partition at once."""
    return partition.nodes * (partition.cpus_per_node // cores)


def _in_range(what: str, value: int, low: int, high: int, show=str) -> str | None:
    if low <= value <= high:
        return None
    return f"{what} must be between {show(low)} and {show(high)} for this profile; you asked for {show(value)}."


def _parse(name: str, value: Any, parse, example: str, reasons: list[str]):
    try:
        return parse(value)
    except (TypeError, ValueError):
        reasons.append(f"{name} {value!r} is not understood; write it like {example}.")
        return None


def _whole_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(value)
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


def choose_options(profile: Profile, partition: Partition, requested: Mapping[str, Any] | None = None) -> DaskOptions:
    """Fill the profile's defaults into `requested` and check every value against the profile.

    Raises OptionsRefused listing every problem at once.
    """
    requested = dict(requested or {})
    reasons: list[str] = []
    unknown = sorted(set(requested) - set(FIELDS))
    if unknown:
        reasons.append(f"Unknown option(s) {', '.join(unknown)}; the options are {', '.join(FIELDS)}.")

    def number(name: str, default: int | None) -> int | None:
        value = requested.get(name)
        if value is None:
            return default
        return _parse(name.replace("_", " ").capitalize(), value, _whole_number, "2", reasons)

    cores = number("cores", profile.cpus.default)
    gpus = number("gpus", profile.gpus.default)
    workers = number("workers", 0)
    adaptive_min = number("adaptive_min", None)
    adaptive_max = number("adaptive_max", None)
    memory = (
        _parse("Memory", requested["memory"], parse_memory_mib, "'2G' or '512M'", reasons)
        if requested.get("memory") is not None
        else profile.memory.default
    )
    walltime = (
        _parse("Walltime", requested["walltime"], parse_walltime_minutes, "'1:00:00' or '30'", reasons)
        if requested.get("walltime") is not None
        else profile.walltime.default
    )
    project = requested.get("project") or None

    checks = [
        cores is not None and _in_range("Cores per worker", cores, profile.cpus.min, profile.cpus.max),
        memory is not None
        and _in_range("Memory per worker", memory, profile.memory.min, profile.memory.max, format_memory),
        gpus is not None and _in_range("GPUs per worker", gpus, profile.gpus.min, profile.gpus.max),
        walltime is not None
        and _in_range("Walltime", walltime, profile.walltime.min, profile.walltime.max, format_walltime),
    ]
    reasons += [c for c in checks if c]

    if cores is not None and profile.cpus.min <= cores <= profile.cpus.max:
        fit = max_workers(partition, cores)
        for name, value in (("Workers", workers), ("Adaptive maximum", adaptive_max)):
            if value is not None and value > fit:
                reasons.append(
                    f"{name} must be at most {fit}: that is how many {cores}-core workers "
                    f"fit on partition {partition.name} at once; you asked for {value}."
                )
    if (adaptive_min is None) != (adaptive_max is None):
        reasons.append("Adaptive scaling needs both a minimum and a maximum.")
    elif adaptive_min is not None and adaptive_max is not None and adaptive_min > adaptive_max:
        reasons.append(
            f"The adaptive minimum ({adaptive_min}) must not exceed the adaptive maximum ({adaptive_max})."
        )
    if adaptive_max is not None and adaptive_max < 1:
        reasons.append("The adaptive maximum must be at least 1 worker.")
    if project is not None and not isinstance(project, str):
        reasons.append("Project must be the name of a Slurm account, like 'project_465000001'.")

    if reasons:
        raise OptionsRefused(reasons)
    return DaskOptions(
        workers=workers,
        cores=cores,
        memory=memory,
        gpus=gpus,
        walltime=walltime,
        adaptive_min=adaptive_min,
        adaptive_max=adaptive_max,
        project=project,
    )
