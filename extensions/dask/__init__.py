"""Dask on the supercomputer from a notebook: site-aware Slurm clusters and their launcher widget."""

from .access import AccessRefused
from .cluster import SiteCluster
from .options import DaskOptions, OptionsRefused

__all__ = ["SiteCluster", "DaskOptions", "OptionsRefused", "AccessRefused", "launcher"]


def launcher(**kwargs):
    """The ipywidgets launcher: pick a profile and resources, Start / Scale / Stop, live status."""
    from .widget import Launcher

    return Launcher(**kwargs).view
