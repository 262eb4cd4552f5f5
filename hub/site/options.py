"""The profile options: one declarative spec and one validator, for the spawn form and for Dask.

A profile's options are `Field`s (name, label, kind, limits or choices, unit, hint,
example) derived from the site's Profile and Partition and from facts about the
user (their Slurm projects and reservations). Which fields each consumer uses:

- `server_spec`: the notebook server (the spawn form, the hub's REST API and the
  batch script): partition, account, cpus, memory, gpus, gpu_type, walltime,
  reservation, environment; the profile itself is chosen among the user's specs.
- `dask_spec`: Dask workers (the launcher widget and `SiteCluster`): workers,
  cores, memory, gpus, walltime, adaptive_min, adaptive_max, project; plus the
  checks that relate fields (workers that fit on the partition, both adaptive bounds).

`validate(spec, payload)` checks every field, refuses unknown ones, and raises one
`OptionsError` carrying every problem with its field; otherwise it returns typed
values (int for counts, MiB and minutes; str for choices; None for an optional field
left empty). Only values from the site or the user's facts come out of a choice,
so nothing a user typed reaches a script. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Literal, Mapping, NamedTuple, Sequence

from .schema import Partition, Profile, Site
from .units import format_memory, format_walltime, parse_memory_mib, parse_walltime_minutes

Kind = Literal["choice", "count", "memory", "walltime", "name"]

_INT = re.compile(r"^\s*\d{1,6}\s*$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
MAX_TEXT = 64
_PARSE = {"memory": parse_memory_mib, "walltime": parse_walltime_minutes}
_SHOW = {"memory": format_memory, "walltime": format_walltime}


class Problem(NamedTuple):
    """One wrong option: the field it is about and what is allowed, in words."""

    field: str
    message: str


class OptionsError(ValueError):
    """Options refused; `problems` lists every wrong field, `labels` names the fields for people."""

    def __init__(self, problems: Sequence[Problem], labels: Mapping[str, str] | None = None):
        self.problems = tuple(problems)
        self.labels = dict(labels or {})
        super().__init__(" ".join(f"{self.labels.get(p.field, p.field)}: {p.message}." for p in self.problems))


@dataclass(frozen=True)
class Field:
    """One option: its kind and limits (`min`/`max` in the kind's unit) or `choices`.

    `default` None makes the field optional: left empty it is None.
    """

    name: str
    label: str
    kind: Kind
    min: int = 0
    max: int = 0
    default: int | str | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""
    hint: str = ""
    example: str = ""

    def show(self, value: int | str | None) -> str:
        """A value as people write it: '2G', '01:00:00', '4'; '' for none."""
        if value is None:
            return ""
        return _SHOW[self.kind](value) if self.kind in _SHOW else str(value)

    def check(self, raw: Any) -> tuple[Any, str | None]:
        """(typed value, None) or (None, what is wrong); empty (None or '') means the default."""
        if raw is None or raw == "":
            return self.default, None
        if self.kind in ("choice", "name"):
            if not isinstance(raw, str) or len(raw) > MAX_TEXT:
                return None, f"must be a short text, not {type(raw).__name__}"
            text = raw.strip()
            if self.kind == "name":
                return (text, None) if _NAME.match(text) else (None, f"{text!r} is not a name like {self.example}")
            if text not in self.choices:
                return None, f"{text!r} is not allowed; choose one of: {', '.join(self.choices) or 'none'}"
            return text, None
        limits = f"{self.show(self.min)} to {self.show(self.max)}"
        if self.kind == "count":
            if isinstance(raw, bool) or not isinstance(raw, (int, str)) or (isinstance(raw, str) and not _INT.match(raw)):
                return None, f"must be a whole number from {limits}"
            number = int(raw)
        else:
            if isinstance(raw, bool) or not isinstance(raw, (int, str)) or (isinstance(raw, str) and len(raw) > 20):
                return None, f"must be like {self.example}; allowed {limits}"
            try:
                number = _PARSE[self.kind](raw)
            except ValueError:
                return None, f"must be like {self.example}; allowed {limits}"
        if not self.min <= number <= self.max:
            return None, f"{self.show(number)} is out of range; allowed {limits}"
        return number, None


# A rule across fields: the values that passed their own checks -> problems.
Check = Callable[[Mapping[str, Any]], list[Problem]]


@dataclass(frozen=True)
class ProfileSpec:
    """The options of one profile for one consumer, in the order a form shows them."""

    profile: str
    title: str
    description: str
    partition: str
    gpu_type: str | None
    fields: tuple[Field, ...]
    checks: tuple[Check, ...] = ()

    def __getitem__(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def labels(self) -> dict[str, str]:
        return {f.name: f.label for f in self.fields}


def unknown_fields(payload: Mapping[Any, Any], allowed: Sequence[str]) -> list[Problem]:
    """A problem for every key of `payload` that is not an option."""
    problems = []
    for key in payload:
        if key not in allowed:
            shown = key if isinstance(key, str) and 0 < len(key) <= MAX_TEXT else "(an empty, long or non-text name)"
            problems.append(Problem(shown, f"unknown option; allowed options: {', '.join(allowed)}"))
    return problems


def validate(spec: ProfileSpec, payload: Any, *, also: Sequence[str] = ()) -> dict[str, Any]:
    """Every field of `spec` from `payload` (missing ones take their defaults), typed.

    `also` names keys the caller has checked already (the spawner's `profile`).
    Raises OptionsError listing every unknown field and every wrong value.
    """
    if not isinstance(payload, Mapping):
        raise OptionsError([Problem("options", "must be a mapping of option names to values")])
    problems = unknown_fields(payload, (*also, *spec.names))
    values: dict[str, Any] = {}
    for field in spec.fields:
        value, wrong = field.check(payload.get(field.name))
        if wrong:
            problems.append(Problem(field.name, wrong))
        else:
            values[field.name] = value
    for check in spec.checks:
        problems += check(values)
    if problems:
        raise OptionsError(problems, spec.labels)
    return values


# ---- the fields, derived from the site ----


def choice(name: str, label: str, choices: Sequence[str], hint: str = "", optional: bool = False) -> Field:
    """A field whose value is one of `choices`; the first is the default unless `optional`."""
    default = None if optional or not choices else choices[0]
    return Field(name, label, "choice", default=default, choices=tuple(choices), hint=hint)


def _resources(profile: Profile, gpu_type: str | None) -> dict[str, Field]:
    cpus, memory, gpus, walltime = profile.cpus, profile.memory, profile.gpus, profile.walltime
    gpu_label = f"GPUs ({gpu_type or 'none'})"
    return {
        "cpus": Field("cpus", "CPUs", "count", cpus.min, cpus.max, cpus.default, unit="CPUs",
                      hint=f"{cpus.min} to {cpus.max}; empty means {cpus.default}", example="2"),
        "memory": Field("memory", "Memory", "memory", memory.min, memory.max, memory.default, unit="MiB",
                        hint=f"{format_memory(memory.min)} to {format_memory(memory.max)}, e.g. 2G or 1536M",
                        example="'2G' or '1536M'"),
        "gpus": Field("gpus", gpu_label, "count", gpus.min, gpus.max, gpus.default, unit="GPUs",
                      hint=" ".join(filter(None, (f"{gpus.min} to {gpus.max}", gpu_type, "GPUs"))), example="1"),
        "walltime": Field("walltime", "Walltime", "walltime", walltime.min, walltime.max, walltime.default,
                          unit="minutes", hint=f"hours:minutes:seconds, up to {format_walltime(walltime.max)}",
                          example="'2:00:00' (hours:minutes:seconds)"),
    }


def _spec(profile: Profile, partition: Partition, fields: Sequence[Field], checks: Sequence[Check] = ()) -> ProfileSpec:
    return ProfileSpec(profile.name, profile.title, profile.description, partition.name, partition.gpu_type,
                       tuple(fields), tuple(checks))


def server_spec(site: Site, profile: Profile, accounts: Sequence[str], reservations: Sequence[str] = ()) -> ProfileSpec:
    """A notebook server's options under `profile` for a user with these Slurm accounts and reservations.

    The profile's own environment comes first (the default); the site's others may be chosen.
    Profile ranges are within the partition's (the site's checks hold that).
    """
    partition = site.partition(profile.partition)
    gpu_type = partition.gpu_type
    resources = _resources(profile, gpu_type)
    own = profile.environment
    return _spec(profile, partition, [
        choice("partition", "Partition", [partition.name]),
        choice("account", "Project (Slurm account)", accounts, "Core-hours are charged to this project."),
        resources["cpus"],
        resources["memory"],
        resources["gpus"],
        choice("gpu_type", "GPU type", [gpu_type] if gpu_type else [], optional=True),
        resources["walltime"],
        choice("reservation", "Reservation", sorted(reservations), "Course and event reservations open to you.",
               optional=True),
        choice("environment", "Environment", [own, *(e.name for e in site.environments if e.name != own)],
               "The software your server starts with."),
    ])


def max_workers(partition: Partition, cores: int) -> int:
    """How many workers of `cores` CPUs fit on the partition at once."""
    return partition.nodes * (partition.cpus_per_node // cores)


def _workers_fit(partition: Partition) -> Check:
    def check(values: Mapping[str, Any]) -> list[Problem]:
        cores = values.get("cores")
        if cores is None:
            return []
        fit = max_workers(partition, cores)
        why = f"that is how many {cores}-core workers fit on partition {partition.name} at once"
        return [Problem(name, f"{values[name]} is out of range; allowed {low} to {fit} ({why})")
                for name, low in (("workers", 0), ("adaptive_min", 0), ("adaptive_max", 1))
                if values.get(name) is not None and values[name] > fit]
    return check


def _adaptive_bounds(values: Mapping[str, Any]) -> list[Problem]:
    low, high = values.get("adaptive_min"), values.get("adaptive_max")
    if (low is None) != (high is None):
        return [Problem("adaptive_max" if high is None else "adaptive_min",
                        "adaptive scaling needs both a minimum and a maximum")]
    if low is not None and high is not None and low > high:
        return [Problem("adaptive_min", f"{low} exceeds the adaptive maximum ({high})")]
    return []


def dask_spec(site: Site, profile: Profile) -> ProfileSpec:
    """Dask workers' options under `profile`: one worker is one Slurm job of `cores`, `memory`, `gpus`.

    The project is checked against the user's Slurm projects by `access.project_to_charge`.
    """
    partition = site.partition(profile.partition)
    resources = _resources(profile, partition.gpu_type)
    most = max_workers(partition, profile.cpus.min)
    count = "workers"
    return _spec(profile, partition, [
        Field("workers", "Workers", "count", 0, most, 0, unit=count, hint="workers to start now (fixed size)"),
        replace(resources["cpus"], name="cores", label="Cores per worker", hint=f"{profile.cpus.min} to {profile.cpus.max}"),
        replace(resources["memory"], label="Memory per worker"),
        replace(resources["gpus"], label="GPUs per worker"),
        replace(resources["walltime"], label="Walltime per worker"),
        Field("adaptive_min", "Adaptive minimum", "count", 0, most, unit=count, hint="empty means a fixed size"),
        Field("adaptive_max", "Adaptive maximum", "count", 1, most, unit=count, hint="empty means a fixed size"),
        Field("project", "Project", "name", hint="empty means your first Slurm project", example="'project_465000001'"),
    ], [_workers_fit(partition), _adaptive_bounds])
