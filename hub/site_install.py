"""Checking a site file and making it the active one (`aifactory config validate`, `aifactory site install`)."""

from __future__ import annotations

import sys

from aifactory.extensions.dask.dask_config import write_site_dask_config
from aifactory.site import INSTALLED_SITE, SiteError, load_site, site_path

from .config import trait_problems
from .localcluster.system import write_if_changed


def validate_file(file: str) -> int:
    """Print whether `file` is a valid site (every problem named); the exit status."""
    try:
        site = load_site(file)
        source, problems = file, trait_problems(site)
    except SiteError as exc:
        source, problems = exc.source, exc.problems
    if problems:
        print(f"{source}: invalid site configuration ({len(problems)} problem(s))", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(
        f"{file}: valid site '{site.cluster.name}': {len(site.partitions)} partitions, "
        f"{len(site.projects)} projects, {len(site.profiles)} profiles, {len(site.courses)} courses"
    )
    return 0


def site_install(file: str) -> int:
    """Validate `file` and install it as the active site, with the Dask defaults that follow from it."""
    if validate_file(file) != 0:
        return 1
    write_if_changed(INSTALLED_SITE, site_path(file).read_text(), mode=0o644)  # `demo`: the packaged one
    INSTALLED_SITE.parent.chmod(0o755)
    print(f"installed as {INSTALLED_SITE}")
    # Dask defaults (and dask-labextension's "new cluster") follow the site too.
    print(f"Dask defaults for this site in {write_site_dask_config(load_site(file))}")
    return 0
