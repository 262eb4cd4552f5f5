"""Cross-field rules of a site file: references resolve, requests fit the hardware.

Each check is a pure function from a `Site` to a list of `Problem`s, each naming
the path of the offending value in the YAML file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

from .schema import FIRST_NODE_HOST, Site
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


def _local_nodes(site: Site) -> Iterator[Problem]:
    """The local cluster's compute nodes, all partitions' together, must fit this one machine."""
    if site.local is None:
        return
    local = site.local
    cpus = sum(p.nodes * p.cpus_per_node for p in site.partitions)
    memory = sum(p.nodes * p.memory_per_node for p in site.partitions)
    nodes = sum(p.nodes for p in site.partitions)
    if cpus > local.cpus:
        yield Problem("local.cpus", f"the partitions' nodes declare {cpus} CPUs together, more than local.cpus = "
                      f"{local.cpus}: raise it, or give the partitions fewer nodes or CPUs")
    if memory > local.memory:
        yield Problem("local.memory", f"the partitions' nodes declare {format_memory(memory)} together, more than "
                      f"local.memory = {format_memory(local.memory)}: give the partitions fewer nodes or less memory")
    room = local.network.num_addresses - FIRST_NODE_HOST - 1
    if nodes > room:
        yield Problem("local.network", f"{local.network} has room for {max(room, 0)} nodes (from .{FIRST_NODE_HOST} "
                      f"on), the partitions have {nodes}: use a larger network")
    if site.hub.api_ip is not None and str(site.hub.api_ip) != local.login_address:
        yield Problem("hub.api_ip", f"{site.hub.api_ip} is not the login node's address on local.network "
                      f"({local.login_address}), where the nodes reach the hub: leave it out or set it so")


def _environments(site: Site) -> Iterator[Problem]:
    """A layered python environment names a python environment that layers on nothing, and pins each package once."""
    python = {e.name: e for e in site.environments if e.kind == "python"}
    for i, env in enumerate(site.environments):
        if env.kind != "python":
            continue
        names = [p.split("==")[0].lower().replace("_", "-").replace(".", "-") for p in env.packages]
        for j, name in enumerate(names):
            if name in names[:j]:
                yield Problem(f"environments[{i}].packages[{j}]", f"{name!r} is pinned twice")
        if env.extends is None:
            continue
        base = python.get(env.extends)
        if base is None:
            yield Problem(f"environments[{i}].extends", _unknown("python environment", env.extends, python))
        elif base.name == env.name or base.extends is not None:
            yield Problem(f"environments[{i}].extends",
                          f"'{env.extends}' must be another python environment that extends none")
        elif base.path == env.path:
            yield Problem(f"environments[{i}].path", f"is the path of '{base.name}', which it extends")


CHECKS = (_duplicates, _profiles, _people, _local_nodes, _environments)


def check_site(site: Site) -> list[Problem]:
    """All cross-field problems of a structurally valid site, in file order per check."""
    return [problem for check in CHECKS for problem in check(site)]
