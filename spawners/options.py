"""Spawn options: the spawner's side of the site's one options spec (`aifactory.site.options`).

Pure functions of the site, the facts about the user (their Unix groups, their
real Slurm associations, the reservations they may use) and the payload the
browser or API sent. Nothing here talks to Slurm; `facts.py` gathers the facts.

- `offers(site, facts)` lists the profiles a user may start, each as the
  `ProfileSpec` the form shows (ranges, choices, hints).
- `validate(site, facts, payload)` turns a payload into `ValidatedOptions` or
  raises `OptionsError` listing every wrong field with what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from aifactory.site.access import usable_profiles
from aifactory.site.options import MAX_TEXT, OptionsError, Problem, ProfileSpec, choice, server_spec, unknown_fields
from aifactory.site.options import validate as validate_spec
from aifactory.site.schema import Site
from aifactory.site.units import format_memory, format_walltime


@dataclass(frozen=True)
class UserFacts:
    """What the hub knows about a user, from Unix and Slurm (gathered in facts.py)."""

    name: str
    groups: frozenset[str] = frozenset()
    accounts: tuple[str, ...] = ()  # Slurm accounts with an association, in Slurm's order
    reservations: frozenset[str] = frozenset()  # active reservations the user may run in
    uid: int | None = None  # from `id`; aifactory.site.identity refuses root and system accounts by it


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


def offers(site: Site, facts: UserFacts) -> list[ProfileSpec]:
    """The profiles `facts.name` may start, in site order, with their options.

    A profile is offered when the user's groups may use it and the user has at
    least one Slurm account. An empty list means the user may start nothing;
    `validate` then says why.
    """
    if not facts.accounts:
        return []
    return [server_spec(site, p, facts.accounts, tuple(facts.reservations))
            for p in usable_profiles(site, facts.groups)]


def validate(site: Site, facts: UserFacts, payload: Any) -> ValidatedOptions:
    """Check every field of `payload` against the chosen profile and the user; missing fields take defaults.

    Raises `OptionsError` listing every unknown field and every value not allowed.
    """
    if not facts.accounts:
        raise OptionsError([Problem("account", "you have no Slurm account (project association); ask your PI to add you")])
    allowed = offers(site, facts)
    if not allowed:
        raise OptionsError([Problem("profile", "no profile of this site is open to your groups; ask your centre for access")])
    profile = choice("profile", "Profile", [o.profile for o in allowed])
    name, wrong = profile.check(payload.get("profile") if isinstance(payload, Mapping) else None)
    if wrong:  # the other fields depend on the profile: name the unknown ones only
        raise OptionsError([*unknown_fields(payload, ("profile", *allowed[0].names)), Problem("profile", wrong)])
    spec = next(o for o in allowed if o.profile == name)
    values = validate_spec(spec, payload, also=("profile",))
    return ValidatedOptions(
        profile=spec.profile, partition=values["partition"], account=values["account"], cpus=values["cpus"],
        memory_mib=values["memory"], gpus=values["gpus"], gpu_type=spec.gpu_type if values["gpus"] else None,
        walltime_minutes=values["walltime"], environment=values["environment"], reservation=values["reservation"],
    )


def refusal_message(error: OptionsError) -> str:
    """The hub's HTTP 400 message: every wrong field with what is allowed."""
    shown = "; ".join(f"'{p.field}': {p.message}" for p in error.problems)
    return f"Invalid option{'s' if len(error.problems) > 1 else ''} {shown}"


def payload_from_form(form: Mapping[str, list[str]]) -> dict[str, str]:
    """A submitted HTML form ({name: [values]}) as a flat payload; a field sent twice is refused."""
    payload: dict[str, str] = {}
    twice = []
    for key, values in form.items():
        if len(values) != 1:
            twice.append(Problem(str(key)[:MAX_TEXT], "must be given exactly once"))
        elif values[0] != "":
            payload[key] = values[0]
    if twice:
        raise OptionsError(twice)
    return payload


__all__ = ["OptionsError", "UserFacts", "ValidatedOptions", "offers", "validate", "refusal_message",
           "payload_from_form"]
