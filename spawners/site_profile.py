"""Which profile and project a user's server runs under, derived from the site.

Pure functions; the spawner supplies the user's Unix groups and Slurm accounts.
"""

from __future__ import annotations

from dataclasses import dataclass

from aifactory.hub.site.schema import Profile, Site
from aifactory.hub.site.units import format_memory, format_walltime


class NoProfileError(ValueError):
    """The user may not start any server: the message says why."""


def profiles_for(site: Site, groups: set[str]) -> list[Profile]:
    """Profiles open to a member of `groups` (a profile without groups is open to all)."""
    return [p for p in site.profiles if not p.groups or groups & set(p.groups)]


@dataclass(frozen=True)
class JobRequest:
    """The Slurm resources of one notebook server."""

    partition: str
    account: str
    cpus: int
    memory: str
    walltime: str
    gres: str = ""

    def sbatch_options(self) -> list[str]:
        """As sbatch arguments, e.g. ['--partition=standard', ...]."""
        options = [
            f"--partition={self.partition}",
            f"--account={self.account}",
            f"--cpus-per-task={self.cpus}",
            f"--mem={self.memory}",
            f"--time={self.walltime}",
        ]
        return options + ([f"--gres={self.gres}"] if self.gres else [])


def default_request(site: Site, groups: set[str], accounts: list[str]) -> tuple[Profile, JobRequest]:
    """The first profile the user may use, at its defaults, charged to their first project."""
    allowed = profiles_for(site, groups)
    if not allowed:
        raise NoProfileError("no profile of this site is open to your groups; ask your centre for access")
    if not accounts:
        raise NoProfileError("you are not a member of any project (Slurm account); ask your PI to add you")
    profile = allowed[0]
    partition = site.partition(profile.partition)
    gpus = profile.gpus.default
    return profile, JobRequest(
        partition=partition.name,
        account=accounts[0],
        cpus=profile.cpus.default,
        memory=format_memory(profile.memory.default),
        walltime=format_walltime(profile.walltime.default),
        gres=f"gpu:{partition.gpus.type}:{gpus}" if gpus and partition.gpus else "",
    )
