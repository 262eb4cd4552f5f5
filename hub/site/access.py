"""Who may use what: the one rule for profiles (by Unix group) and projects (by Slurm association).

Pure functions of the site and facts about the user that the caller looked up
(their groups; their Slurm projects, from `aifactory.slurm`). The spawner's
offers and Dask's `SiteCluster` both ask here.
"""

from __future__ import annotations

from typing import Collection, Sequence

from .schema import Profile, Site


class AccessRefused(PermissionError):
    """The user may not use this profile or project; the message is a sentence."""


def may_use(profile: Profile, groups: Collection[str]) -> bool:
    """A profile without groups is for everyone; otherwise for members of one of its groups."""
    return not profile.groups or bool(set(profile.groups) & set(groups))


def usable_profiles(site: Site, groups: Collection[str]) -> list[Profile]:
    """The profiles open to these groups, in site order."""
    return [p for p in site.profiles if may_use(p, groups)]


def check_profile(site: Site, name: str | None, user: str, groups: Collection[str]) -> Profile:
    """The profile `name` (or the first usable one), or AccessRefused saying why not."""
    usable = usable_profiles(site, groups)
    names = ", ".join(p.name for p in usable) or "none"
    if name is None:
        if not usable:
            raise AccessRefused(f"There is no profile that {user} may use.")
        return usable[0]
    known = {p.name: p for p in site.profiles}
    if name not in known:
        raise AccessRefused(f"There is no profile called {name!r}; the profiles you may use are: {names}.")
    profile = known[name]
    if not may_use(profile, groups):
        raise AccessRefused(
            f"{user} may not use profile {name!r} ({profile.title}): it is for members of "
            f"{', '.join(profile.groups)}. The profiles you may use are: {names}."
        )
    return profile


def project_to_charge(user: str, projects: Sequence[str], requested: str | None) -> str:
    """The Slurm project to charge: the requested one if it is among the user's `projects`, else their first."""
    if requested is not None:
        if requested in projects:
            return requested
        listed = ", ".join(projects) or "none"
        raise AccessRefused(
            f"{user} may not charge project {requested!r}: it is not one of your Slurm projects ({listed})."
        )
    if not projects:
        raise AccessRefused(f"{user} is not a member of any Slurm project, so cannot start jobs.")
    return projects[0]
