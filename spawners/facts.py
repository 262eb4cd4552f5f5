"""What the hub learns about a user from Unix and Slurm before validating options.

`gather_facts` is the I/O edge (`id`, sacctmgr, scontrol, all through
`slurmcli.run`, so on a login node over ssh when the hub runs in Kubernetes: the
hub itself needs no user directory); the parsers are pure and tested on real output.
"""

from __future__ import annotations

import asyncio
import re

from . import slurmcli
from .options import UserFacts


def parse_id(text: str) -> tuple[int, frozenset[str]]:
    """`id -- NAME` -> (uid, group names, primary and supplementary)."""
    uid = re.match(r"uid=(\d+)\(", text.strip())
    if uid is None:
        raise ValueError(f"not the output of id: {text.strip()[:80]!r}")
    groups = re.search(r"\bgroups=(\S+)", text)
    names = re.findall(r"\d+\(([^()]+)\)", groups.group(1)) if groups else []
    return int(uid.group(1)), frozenset(names)


def parse_associations(text: str) -> tuple[str, ...]:
    """`sacctmgr -n -P show user NAME withassoc format=defaultaccount,account` -> accounts, default first."""
    accounts, default = [], ""
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 2:
            continue
        default = default or fields[0]
        if fields[1] and fields[1] not in accounts:
            accounts.append(fields[1])
    if default in accounts:
        accounts.remove(default)
        accounts.insert(0, default)
    return tuple(accounts)


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


async def gather_facts(name: str, timeout: float = 20.0) -> UserFacts:
    """Uid and groups (`id`), accounts (one sacctmgr) and reservations from Slurm (raises SchedulerUnavailable)."""
    async def reservations() -> str:
        try:
            return await slurmcli.run(["scontrol", "show", "reservation", "--oneliner"], timeout)
        except slurmcli.CommandFailed:
            return ""

    identity, assoc, reservations_text = await asyncio.gather(
        slurmcli.run(["id", "--", name], timeout),
        slurmcli.run(["sacctmgr", "-n", "-P", "show", "user", name, "withassoc", "format=defaultaccount,account"],
                     timeout),
        reservations(),
    )
    accounts = parse_associations(assoc)
    uid, groups = parse_id(identity)
    return UserFacts(name=name, uid=uid, groups=groups, accounts=accounts,
                     reservations=parse_reservations(reservations_text, name, accounts))
