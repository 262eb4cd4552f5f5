"""What the hub learns about a user from Unix and Slurm before validating options.

`gather_facts` is the I/O edge (getgrouplist, sacctmgr, scontrol); the parsers
are pure and tested on Slurm's real output.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd

from . import slurmcli
from .options import UserFacts


def unix_groups(name: str) -> frozenset[str]:
    entry = pwd.getpwnam(name)
    return frozenset(grp.getgrgid(gid).gr_name for gid in os.getgrouplist(name, entry.pw_gid))


def parse_associations(assoc_text: str, default_text: str) -> tuple[str, ...]:
    """`sacctmgr -P show assoc format=account` + `show user format=defaultaccount` -> accounts, default first."""
    accounts = []
    for line in assoc_text.splitlines():
        account = line.split("|")[0].strip()
        if account and account not in accounts:
            accounts.append(account)
    default = default_text.strip().split("|")[0] if default_text.strip() else ""
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
    """Groups from Unix; accounts and reservations from Slurm (raises SchedulerUnavailable)."""
    async def reservations() -> str:
        try:
            return await slurmcli.run(["scontrol", "show", "reservation", "--oneliner"], timeout)
        except slurmcli.CommandFailed:
            return ""

    assoc, default, reservations_text = await asyncio.gather(
        slurmcli.run(["sacctmgr", "-n", "-P", "show", "assoc", "where", f"users={name}", "format=account"], timeout),
        slurmcli.run(["sacctmgr", "-n", "-P", "show", "user", name, "format=defaultaccount"], timeout),
        reservations(),
    )
    accounts = parse_associations(assoc, default)
    return UserFacts(name=name, groups=unix_groups(name), accounts=accounts,
                     reservations=parse_reservations(reservations_text, name, accounts))
