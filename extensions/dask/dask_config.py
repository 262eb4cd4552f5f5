"""The dask configuration a site installs next to its Python environment.

It makes dask-labextension's "new cluster" button create a `SiteCluster` (the
same site-aware Slurm cluster as the launcher), lets a plain `Client(address)`
of the owner find that cluster's TLS credentials (`tls.load_security`), and
gives plain `SLURMCluster(config_name="<profile>")` the site's defaults. Building it is
pure (`site_dask_config`); `write_site_dask_config` is the edge:

    python -m aifactory.extensions.dask.dask_config [PREFIX]   # -> PREFIX/etc/dask/aifactory.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from aifactory.site import load_site
from aifactory.site.files import atomic_write
from aifactory.site.install import shared_environment
from aifactory.site.schema import Site

from .jobqueue_config import site_jobqueue_config
from .tls import security_client_config

CONFIG_NAME = "aifactory.yaml"


def labextension_config() -> dict[str, Any]:
    """dask-labextension's factory: `await SiteCluster(asynchronous=True)` with the user's first usable profile."""
    return {
        "labextension": {
            "factory": {"module": "aifactory.extensions.dask", "class": "SiteCluster", "args": [], "kwargs": {}},
            "default": {"workers": None, "adapt": None},
        }
    }


def site_dask_config(site: Site) -> dict[str, Any]:
    return {**labextension_config(), **security_client_config(), **site_jobqueue_config(site)}


def write_site_dask_config(site: Site, prefix: str | Path | None = None) -> Path:
    """Write the config where dask reads it for this environment: PREFIX/etc/dask/."""
    target = Path(prefix or shared_environment()) / "etc" / "dask" / CONFIG_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(target, "# Generated from the site file by aifactory.extensions.dask.dask_config; "
                        "do not edit.\n" + yaml.safe_dump(site_dask_config(site), sort_keys=False))


if __name__ == "__main__":
    print(write_site_dask_config(load_site(), sys.argv[1] if len(sys.argv) > 1 else None))
