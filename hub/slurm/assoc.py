"""The association manager: what each project has used of the allocation Slurm enforces.

`scontrol show assoc_mgr` reports, for each association, every GrpTRESMins limit with the
usage it is charged against: `GrpTRESMins=cpu=1200000(5234),...,gres/gpu=N(0)` is a limit of
1,200,000 core-minutes (N: none) of which 5,234 are used. One cheap call for the projects asked
about, whatever the size of accounting; the usage is tracked only under priority/multifactor
(`usage_tracked` on `scontrol show config`), which the local cluster configures undecayed.
"""

from __future__ import annotations

import re

from .runner import Failed

CONFIG_ARGV = ["scontrol", "show", "config"]
_TRES_MINUTES = re.compile(r"([\w/]+)=(N|\d+)\((\d+)\)")


def assoc_mgr_argv(accounts: tuple[str, ...]) -> list[str]:
    """The association records of `accounts`, one per line. The user filter names root, a member of no project:
    an account's own record passes any user filter, its members' records do not, so the answer is one line
    per account, not one per member of a class."""
    return ["scontrol", "--oneliner", "show", "assoc_mgr", f"accounts={','.join(accounts)}", "users=root",
            "flags=assoc"]


def parse_assoc_mgr(text: str) -> dict[str, dict[str, tuple[int | None, int]]]:
    """Output of `assoc_mgr_argv(...)` -> {account: {tres: (limit minutes or None, used minutes)}} from each
    account's own record (no user, no partition): the usage its allocation is charged. Raises Failed when
    an association record has no GrpTRESMins."""
    usage = {}
    for line in text.splitlines():
        if not line.startswith("ClusterName="):
            continue  # the two title lines
        fields = dict(item.partition("=")[::2] for item in line.split())
        if fields.get("UserName") or fields.get("Partition"):
            continue
        if "GrpTRESMins" not in fields or "Account" not in fields:
            raise Failed(f"scontrol show assoc_mgr printed a record without GrpTRESMins: {line[:120]!r}")
        usage[fields["Account"]] = {
            tres: (None if limit == "N" else int(limit), int(used))
            for tres, limit, used in _TRES_MINUTES.findall(fields["GrpTRESMins"])
        }
    return usage


def usage_tracked(config_text: str) -> bool:
    """Whether `scontrol show config` names priority/multifactor, the only priority plugin that tracks usage
    (under priority/basic every association's usage reads 0)."""
    for line in config_text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "PriorityType":
            return value.strip() == "priority/multifactor"
    raise Failed("scontrol show config printed no PriorityType")
