"""Which profiles and Slurm projects a user may use for Dask workers.

The rules are pure functions of the site and of facts about the user (Unix
groups, Slurm associations); `unix_groups` and `slurm_accounts` fetch those
facts at the edge.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess

from aifactory.site.schema import Profile, Site


class AccessRefused(PermissionError):
    """The user may not use this profile or project; the message is a sentence."""


def may_use(profile: Profile, groups: set[str]) -> bool:
    return not profile.groups or bool(set(profile.groups) & groups)


def usable_profiles(site: Site, groups: set[str]) -> list[Profile]:
    return [p for p in site.profiles if may_use(p, groups)]


def check_profile(site: Site, name: str | None, user: str, groups: set[str]) -> Profile:
    """The profile `name` (or the first usable one), or AccessRefused saying why not."""
    usable = usable_profiles(site, groups)
    if name is None:
        if not usable:
            raise AccessRefused(f"There is no Dask profile that {user} may use.")
        return usable[0]
    known = {p.name: p for p in site.profiles}
    if name not in known:
        names = ", ".join(p.name for p in usable) or "none"
        raise AccessRefused(f"There is no profile called {name!r}; the profiles you may use are: {names}.")
    profile = known[name]
    if not may_use(profile, groups):
        names = ", ".join(p.name for p in usable) or "none"
        raise AccessRefused(
            f"{user} may not use profile {name!r} ({profile.title}): it is for members of "
            f"{', '.join(profile.groups)}. The profiles you may use are: {names}."
        )
    return profile


def choose_project(site: Site, user: str, accounts: list[str] | None, requested: str | None) -> str:
    """The Slurm account to charge: the requested one if the user has it, else their first.

    `accounts` are the user's Slurm associations, or None when Slurm could not be
    asked; then the site file's project members decide.
    """
    mine = accounts if accounts is not None else [p.name for p in site.projects_of(user)]
    if requested is not None:
        if requested in mine:
            return requested
        listed = ", ".join(mine) or "none"
        raise AccessRefused(
            f"{user} may not charge project {requested!r}: it is not one of your Slurm projects ({listed})."
        )
    if not mine:
        raise AccessRefused(f"{user} is not a member of any Slurm project, so cannot start Dask workers.")
    return mine[0]


# ---- edges: facts about the user from the system ----


def current_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def home_of(user: str) -> str:
    return pwd.getpwnam(user).pw_dir


def unix_groups(user: str) -> set[str]:
    """Names of the user's Unix groups (primary and supplementary)."""
    entry = pwd.getpwnam(user)
    names = set()
    for gid in os.getgrouplist(user, entry.pw_gid):
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return names


def parse_accounts(text: str) -> list[str]:
    """`sacctmgr -nP show assoc user=X format=account` output -> accounts, in order, without repeats."""
    seen: list[str] = []
    for line in text.splitlines():
        name = line.strip()
        if name and name not in seen:
            seen.append(name)
    return seen


def slurm_accounts(user: str, timeout: float = 10) -> list[str] | None:
    """The user's Slurm accounts, or None if Slurm did not answer (unknown, not 'none')."""
    argv = ["sacctmgr", "-nP", "show", "assoc", f"user={user}", "format=account"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_accounts(done.stdout)
