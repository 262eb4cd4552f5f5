"""Spawn options: what a user may ask for, checked field by field on the hub.

Pure functions of the site, the facts about the user (their Unix groups, their
real Slurm associations, the reservations they may use) and the payload the
browser or API sent. Nothing here talks to Slurm; `slurm.py` gathers the facts.

- `offers(site, facts)` lists the profiles a user may start, each with the
  ranges and choices the form (or the hub's spawn page) should show.
- `validate(site, facts, payload)` turns a payload into `ValidatedOptions` or
  raises `OptionsError(field, message)`; the message names the field and what
  is allowed. Unknown fields are refused. Only values from the site or from the
  user's facts ever come out, so nothing a user typed reaches a script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from aifactory.site.schema import Profile, Site
from aifactory.site.units import format_memory, format_walltime, parse_memory_mib, parse_walltime_minutes

# The fields a payload may carry; anything else is refused.
FIELDS = ("profile", "partition", "account", "cpus", "memory", "gpus", "gpu_type", "walltime", "reservation",
          "environment")
_INT = re.compile(r"^\s*\d{1,6}\s*$")
_MAX_TEXT = 64


class OptionsError(ValueError):
    """A spawn option the user may not have; `field` names it, the message says what is allowed."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class UserFacts:
    """What the hub knows about a user, from Unix and Slurm (gathered in slurm.py)."""

    name: str
    groups: frozenset[str] = frozenset()
    accounts: tuple[str, ...] = ()  # Slurm accounts with an association, in Slurm's order
    reservations: frozenset[str] = frozenset()  # active reservations the user may run in
    uid: int | None = None  # from `id`; hub.site.identity refuses root and system accounts by it


@dataclass(frozen=True)
class Choice:
    """A numeric range as the form shows it."""

    min: int
    max: int
    default: int


@dataclass(frozen=True)
class ProfileOffer:
    """One profile a user may start, with everything a spawn form needs."""

    name: str
    title: str
    description: str
    partition: str
    gpu_type: str | None
    accounts: tuple[str, ...]
    cpus: Choice
    memory_mib: Choice
    gpus: Choice
    walltime_minutes: Choice  # max already capped at the partition's maximum
    environments: tuple[str, ...]  # the profile's own first
    reservations: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValidatedOptions:
    """Options that passed `validate`: every value comes from the site or the user's facts."""

    profile: str
    partition: str
    account: str
    cpus: int
    memory_mib: int
    gpus: int
    gpu_type: str | None
    walltime_minutes: int
    environment: str
    reservation: str | None = None

    def summary(self) -> str:
        gpus = f", {self.gpus} GPU {self.gpu_type}" if self.gpus else ""
        return (f"{self.profile} on {self.partition} ({self.account}): {self.cpus} CPU, "
                f"{format_memory(self.memory_mib)}{gpus}, {format_walltime(self.walltime_minutes)}")


def _offer(site: Site, facts: UserFacts, profile: Profile) -> ProfileOffer:
    partition = site.partition(profile.partition)
    wall_max = min(profile.walltime.max, partition.max_walltime)
    wall_default = min(profile.walltime.default, wall_max)
    own = profile.environment
    return ProfileOffer(
        name=profile.name,
        title=profile.title,
        description=profile.description,
        partition=partition.name,
        gpu_type=partition.gpus.type if partition.gpus else None,
        accounts=facts.accounts,
        cpus=Choice(profile.cpus.min, min(profile.cpus.max, partition.cpus_per_node), profile.cpus.default),
        memory_mib=Choice(profile.memory.min, min(profile.memory.max, partition.memory_per_node),
                          profile.memory.default),
        gpus=Choice(profile.gpus.min, min(profile.gpus.max, partition.gpus_per_node), profile.gpus.default),
        walltime_minutes=Choice(min(profile.walltime.min, wall_max), wall_max, wall_default),
        environments=(own, *(e.name for e in site.environments if e.name != own)),
        reservations=tuple(sorted(facts.reservations)),
    )


def offers(site: Site, facts: UserFacts) -> list[ProfileOffer]:
    """The profiles `facts.name` may start, in site order, with their allowed ranges.

    A profile is offered when it has no groups or shares one with the user, and
    the user has at least one Slurm account. An empty list means the user may
    start nothing; `validate` then says why.
    """
    if not facts.accounts:
        return []
    return [_offer(site, facts, p) for p in site.profiles if not p.groups or facts.groups & set(p.groups)]


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise OptionsError(name, f"must be a short text, not {type(value).__name__}")
    return value.strip()


def _one_of(name: str, value: Any, allowed: tuple[str, ...] | list[str]) -> str:
    text = _text(name, value)
    if text not in allowed:
        shown = ", ".join(allowed) if allowed else "none"
        raise OptionsError(name, f"{text!r} is not allowed; choose one of: {shown}")
    return text


def _in_range(name: str, value: int, choice: Choice, show=str) -> int:
    if not choice.min <= value <= choice.max:
        raise OptionsError(name, f"{show(value)} is out of range; allowed {show(choice.min)} to {show(choice.max)}")
    return value


def _integer(name: str, value: Any, choice: Choice) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not _INT.match(value)):
        raise OptionsError(name, f"must be a whole number from {choice.min} to {choice.max}")
    return _in_range(name, int(value), choice)


def _parsed(name: str, value: Any, parse, choice: Choice, show, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and len(value) > 20):
        raise OptionsError(name, f"must be like {example}; allowed {show(choice.min)} to {show(choice.max)}")
    try:
        number = parse(value)
    except ValueError:
        raise OptionsError(name, f"must be like {example}; allowed {show(choice.min)} to {show(choice.max)}") from None
    return _in_range(name, number, choice, show)


def validate(site: Site, facts: UserFacts, payload: Mapping[str, Any]) -> ValidatedOptions:
    """Check every field of `payload` against the site and the user; missing fields take defaults.

    Raises `OptionsError` for the first field that is unknown or not allowed.
    """
    if not isinstance(payload, Mapping):
        raise OptionsError("options", "must be a mapping of option names to values")
    for key in payload:
        if key not in FIELDS:
            shown = key if isinstance(key, str) and 0 < len(key) <= _MAX_TEXT else "(an empty, long or non-text name)"
            raise OptionsError(shown, f"unknown option; allowed options: {', '.join(FIELDS)}")
    if not facts.accounts:
        raise OptionsError("account", "you have no Slurm account (project association); ask your PI to add you")
    allowed = offers(site, facts)
    if not allowed:
        raise OptionsError("profile", "no profile of this site is open to your groups; ask your centre for access")
    names = [o.name for o in allowed]
    offer = allowed[names.index(_one_of("profile", payload["profile"], names))] if "profile" in payload else allowed[0]
    if "partition" in payload:
        _one_of("partition", payload["partition"], [offer.partition])
    account = _one_of("account", payload["account"], offer.accounts) if "account" in payload else offer.accounts[0]
    cpus = _integer("cpus", payload.get("cpus", offer.cpus.default), offer.cpus)
    memory = _parsed("memory", payload.get("memory", offer.memory_mib.default), parse_memory_mib, offer.memory_mib,
                     format_memory, "'2G' or '1536M'")
    gpus = _integer("gpus", payload.get("gpus", offer.gpus.default), offer.gpus)
    gpu_type = offer.gpu_type if gpus else None
    if "gpu_type" in payload and payload["gpu_type"] not in ("", None):
        _one_of("gpu_type", payload["gpu_type"], [offer.gpu_type] if offer.gpu_type else [])
    walltime = _parsed("walltime", payload.get("walltime", offer.walltime_minutes.default), parse_walltime_minutes,
                       offer.walltime_minutes, format_walltime, "'2:00:00' (hours:minutes:seconds)")
    environment = (_one_of("environment", payload["environment"], offer.environments) if "environment" in payload
                   else offer.environments[0])
    reservation = None
    if payload.get("reservation") not in (None, ""):
        reservation = _one_of("reservation", payload["reservation"], offer.reservations)
    return ValidatedOptions(
        profile=offer.name, partition=offer.partition, account=account, cpus=cpus, memory_mib=memory, gpus=gpus,
        gpu_type=gpu_type, walltime_minutes=walltime, environment=environment, reservation=reservation,
    )


def payload_from_form(form: Mapping[str, list[str]]) -> dict[str, str]:
    """A submitted HTML form ({name: [values]}) as a flat payload; a field sent twice is refused."""
    payload: dict[str, str] = {}
    for key, values in form.items():
        if len(values) != 1:
            raise OptionsError(str(key)[:_MAX_TEXT], "must be given exactly once")
        if values[0] != "":
            payload[key] = values[0]
    return payload


__all__ = ["FIELDS", "OptionsError", "UserFacts", "Choice", "ProfileOffer", "ValidatedOptions", "offers",
           "validate", "payload_from_form"]
