"""Facts about the user that Dask workers need, fetched at the edge: who they are, their home, their Unix groups.

The rules that use them (which profiles, which project) are `aifactory.site.access`;
the user's Slurm projects come from `aifactory.slurm.projects`, which also says what
stands in when Slurm does not answer.
"""

from __future__ import annotations

import grp
import os
import pwd


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
