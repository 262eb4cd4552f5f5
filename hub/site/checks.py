"""Cross-field rules of a site file: references resolve, requests fit the hardware.

Each check is a pure function from a `Site` to a list of `Problem`s, each naming
the path of the offending value in the YAML file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

from .schema import Site
from .units import format_memory, format_walltime


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    names = ", ".join(sorted(known)) or "none defined"
    return f"unknown {kind} '{name}' (known: {names})"


def _duplicates(site: Site) -> Iterator[Problem]:
    sections = {
        "partitions": [p.name for p in site.partitions],
        "projects": [p.name for p in site.projects],
        "environments": [e.name for e in site.environments],
        "profiles": [p.name for p in site.profiles],
        "courses": [c.id for c in site.courses],
        "groups": [g.name for g in site.groups],
        "users": [u.name for u in site.users],
    }
    for section, names in sections.items():
        counts = Counter(names)
        seen: set[str] = set()
        key = "id" if section == "courses" else "name"
        for i, name in enumerate(names):
            if counts[name] > 1 and name in seen:
                yield Problem(f"{section}[{i}].{key}", f"duplicate {key} '{name}'")
            seen.add(name)
    defaults = [i for i, p in enumerate(site.partitions) if p.default]
    for i in defaults[1:]:
        yield Problem(f"partitions[{i}].default", "only one partition may be the default")


def _profiles(site: Site) -> Iterator[Problem]:
    partitions = {p.name: p for p in site.partitions}
    environments = {e.name for e in site.environments}
    groups = {g.name for g in site.groups}
    for i, prof in enumerate(site.profiles):
        at = f"profiles[{i}]"
        if prof.environment not in environments:
            yield Problem(f"{at}.environment", _unknown("environment", prof.environment, environments))
        for j, group in enumerate(prof.groups):
            if group not in groups:
                yield Problem(f"{at}.groups[{j}]", _unknown("group", group, groups))
        part = partitions.get(prof.partition)
        if part is None:
            yield Problem(f"{at}.partition", _unknown("partition", prof.partition, partitions))
            continue
        for field, asked, limit, show, limit_words in (
                ("cpus", prof.cpus.max, part.cpus_per_node, str, "{} CPUs per node"),
                ("memory", prof.memory.max, part.memory_per_node, format_memory, "{} per node"),
                ("gpus", prof.gpus.max, part.gpus_per_node, str, "{} GPUs per node"),
                ("walltime", prof.walltime.max, part.max_walltime, format_walltime, "max walltime {}")):
            if asked > limit:
                yield Problem(f"{at}.{field}.max", f"{show(asked)} exceeds partition {part.name} "
                              f"({limit_words.format(show(limit))})")


def _people(site: Site) -> Iterator[Problem]:
    users = {u.name for u in site.users}
    groups = {g.name for g in site.groups}
    projects = {p.name for p in site.projects}
    profiles = {p.name for p in site.profiles}
    for i, user in enumerate(site.users):
        for j, group in enumerate(user.groups):
            if group not in groups:
                yield Problem(f"users[{i}].groups[{j}]", _unknown("group", group, groups))
    for i, project in enumerate(site.projects):
        for j, member in enumerate(project.members):
            if member not in users:
                yield Problem(f"projects[{i}].members[{j}]", _unknown("user", member, users))
    for i, course in enumerate(site.courses):
        at = f"courses[{i}]"
        if course.profile not in profiles:
            yield Problem(f"{at}.profile", _unknown("profile", course.profile, profiles))
        if course.project not in projects:
            yield Problem(f"{at}.project", _unknown("project", course.project, projects))
        for role in ("trainers", "students"):
            for j, name in enumerate(getattr(course, role)):
                if name not in users:
                    yield Problem(f"{at}.{role}[{j}]", _unknown("user", name, users))
    for j, group in enumerate(site.auth.admin_groups):
        if group not in groups:
            yield Problem(f"auth.admin_groups[{j}]", _unknown("group", group, groups))


def _local_node(site: Site) -> Iterator[Problem]:
    """The local cluster is one node hosting every partition: each must fit on it."""
    if site.local is None:
        return
    for i, part in enumerate(site.partitions):
        if part.cpus_per_node > site.local.cpus:
            yield Problem(
                f"partitions[{i}].cpus_per_node",
                f"{part.cpus_per_node} exceeds the local node (local.cpus = {site.local.cpus})",
            )
        if part.memory_per_node > site.local.memory:
            yield Problem(
                f"partitions[{i}].memory_per_node",
                f"{format_memory(part.memory_per_node)} exceeds the local node "
                f"(local.memory = {format_memory(site.local.memory)})",
            )
    gpu_types: dict[str, tuple[int, str]] = {}
    for i, part in enumerate(site.partitions):
        if part.gpus is None:
            continue
        seen = gpu_types.setdefault(part.gpus.type, (part.gpus.count, part.name))
        if seen[0] != part.gpus.count:
            yield Problem(
                f"partitions[{i}].gpus.count",
                f"{part.gpus.count} {part.gpus.type} GPUs differs from partition {seen[1]} ({seen[0]}); "
                "the one local node has a single count per GPU type",
            )


CHECKS = (_duplicates, _profiles, _people, _local_node)


def check_site(site: Site) -> list[Problem]:
    """All cross-field problems of a structurally valid site, in file order per check."""
    return [problem for check in CHECKS for problem in check(site)]
