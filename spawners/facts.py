"""What the hub learns about a user from Unix and Slurm before validating options.

`gather_facts` is the I/O edge (`id`, the user's projects, scontrol, all through the
spawner's `SlurmRunner`, so on a login node over ssh when the hub runs in Kubernetes:
the hub itself needs no user directory); the parsers are pure and tested on real output.
Which projects a user may charge, and what stands in when slurmdbd does not answer, is
`aifactory.slurm.projects`'s one policy.
"""

from __future__ import annotations

import asyncio
import re

from aifactory.site.schema import Site
from aifactory.slurm.projects import all_associations_argv, parse_all_associations, user_projects
from aifactory.slurm.runner import Refused, SlurmError, SlurmRunner

from .cluster_state import cached
from .options import UserFacts


def parse_id(text: str) -> tuple[int, frozenset[str]]:
    """`id -- NAME` -> (uid, group names, primary and supplementary)."""
    uid = re.match(r"uid=(\d+)\(", text.strip())
    if uid is None:
        raise ValueError(f"not the output of id: {text.strip()[:80]!r}")
    groups = re.search(r"\bgroups=(\S+)", text)
    names = re.findall(r"\d+\(([^()]+)\)", groups.group(1)) if groups else []
    return int(uid.group(1)), frozenset(names)


def parse_reservations(text: str, user: str, accounts: tuple[str, ...]) -> frozenset[str]:
    """`scontrol show reservation --oneliner` -> names of the reservations `user` may run in."""
    allowed = set()
    for line in text.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        name = fields.get("ReservationName")
        if not name or fields.get("State", "ACTIVE") not in ("ACTIVE", "INACTIVE"):
            continue
        users = {u.lstrip("-") for u in fields.get("Users", "").split(",") if u and not u.startswith("-")}
        res_accounts = {a for a in fields.get("Accounts", "").split(",") if a and not a.startswith("-")}
        if user in users or res_accounts & set(accounts):
            allowed.add(name)
    return frozenset(allowed)


# The reservations are the same for every user: one scontrol serves every first spawn page for this long
# (a class logging in at once asks once, not once each). A user's facts are reused longer (facts_cache_seconds).
RESERVATIONS_SECONDS = 30.0
# Every user's projects, one sacctmgr for the hub this often; a user not in it yet is asked alone. A project
# a user was just added to shows at most this late (slurmctld checks the account again at every sbatch).
ASSOCIATIONS_SECONDS = 60.0


async def projects_of(name: str, site: Site, timeout: float | None, runner: SlurmRunner) -> tuple[str, ...]:
    """The user's projects from the hub-wide table; from sacctmgr for them alone (with its fallback) when the
    table does not list them or cannot be read."""
    async def table() -> dict[str, tuple[str, ...]]:
        return parse_all_associations(await runner.run(all_associations_argv(), timeout=timeout))

    try:
        known = await cached("associations", ASSOCIATIONS_SECONDS, table)
    except SlurmError:
        known = {}
    if name in known:
        return known[name]
    return await user_projects(name, site, runner, timeout)


async def gather_facts(name: str, *, site: Site, timeout: float | None = None,
                       runner: SlurmRunner = SlurmRunner()) -> UserFacts:
    """Uid and groups (`id`), projects and reservations from Slurm (raises SlurmError)."""
    async def all_reservations() -> str:
        try:
            return await runner.run(["scontrol", "show", "reservation", "--oneliner"], timeout=timeout)
        except Refused:
            return ""

    identity, accounts, reservations_text = await asyncio.gather(
        runner.run(["id", "--", name], timeout=timeout),
        projects_of(name, site, timeout, runner),
        cached("reservations", RESERVATIONS_SECONDS, all_reservations),
    )
    uid, groups = parse_id(identity)
    return UserFacts(name=name, uid=uid, groups=groups, accounts=accounts,
                     reservations=parse_reservations(reservations_text, name, accounts))
