"""Which Slurm projects (accounts) a user may charge: one lookup, one fallback policy.

The spawner (the project list of the spawn form) and the Dask launcher (the account its
workers charge) both ask here.

Policy: Slurm's associations decide (`sacctmgr show user NAME withassoc`, the user's default
account first). The hub reads every user's at once (`all_associations_argv`, one slurmdbd round trip
a minute for the whole hub, so a class logging in does not wait on slurmdbd one by one) and asks for one
user only when they are not in that table yet. When slurmdbd does not answer (`NoAnswer`), the site file's project members
stand in for them, with a warning each time that names the user and why: slurmctld keeps its
own copy of the associations and checks the account again at every `sbatch`, so a stale guess
is refused at submission, never charged, and users can still start servers and workers while
slurmdbd is down. A refusal or an answer that cannot be read (`Refused`, `Failed`) is not
guessed around: it raises.
"""

from __future__ import annotations

import logging

from aifactory.site.schema import Site

from .runner import Failed, NoAnswer, SlurmRunner

log = logging.getLogger(__name__)


def associations_argv(user: str) -> list[str]:
    return ["sacctmgr", "--noheader", "--parsable2", "show", "user", user, "withassoc",
            "format=DefaultAccount,Account"]


def all_associations_argv() -> list[str]:
    return ["sacctmgr", "--noheader", "--parsable2", "show", "user", "withassoc",
            "format=User,DefaultAccount,Account"]


def parse_associations(text: str) -> tuple[str, ...]:
    """`associations_argv` output -> the user's accounts, default first, each once."""
    accounts, default = [], ""
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.strip().split("|")
        if len(fields) != 2:
            raise Failed(f"sacctmgr printed a line that is not DefaultAccount|Account: {line.strip()[:120]!r}")
        default = default or fields[0]
        if fields[1] and fields[1] not in accounts:
            accounts.append(fields[1])
    if default in accounts:
        accounts.remove(default)
        accounts.insert(0, default)
    return tuple(accounts)


def parse_all_associations(text: str) -> dict[str, tuple[str, ...]]:
    """`all_associations_argv` output -> each user's accounts, default first (as `parse_associations`)."""
    lines: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        user, sep, rest = line.strip().partition("|")
        if not sep or not user:
            raise Failed(f"sacctmgr printed a line that is not User|DefaultAccount|Account: {line.strip()[:120]!r}")
        lines.setdefault(user, []).append(rest)
    return {user: parse_associations("\n".join(rest)) for user, rest in lines.items()}


def site_projects(site: Site, user: str) -> tuple[str, ...]:
    """The fallback: the projects whose members the site file lists `user` among, in the file's order."""
    return tuple(p.name for p in site.projects_of(user))


def _fallback(site: Site, user: str, error: NoAnswer) -> tuple[str, ...]:
    """`site_projects`, logged each time: a guess an operator should see while slurmdbd is down."""
    projects = site_projects(site, user)
    log.warning("Slurm did not answer for %s's projects (%s); using the site file's members: %s",
                user, error, ", ".join(projects) or "none")
    return projects


async def user_projects(user: str, site: Site, runner: SlurmRunner = SlurmRunner(),
                        timeout: float | None = None) -> tuple[str, ...]:
    """The accounts `user` may charge (see the module's policy)."""
    try:
        return parse_associations(await runner.run(associations_argv(user), timeout=timeout))
    except NoAnswer as error:
        return _fallback(site, user, error)


def user_projects_sync(user: str, site: Site, runner: SlurmRunner = SlurmRunner(),
                       timeout: float | None = None) -> tuple[str, ...]:
    """`user_projects` for code outside an event loop (the Dask launcher in a kernel)."""
    try:
        return parse_associations(runner.run_sync(associations_argv(user), timeout=timeout))
    except NoAnswer as error:
        return _fallback(site, user, error)
