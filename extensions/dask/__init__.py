"""Dask on the supercomputer from a notebook: site-aware Slurm clusters and their launcher widget."""

from aifactory.site.access import AccessRefused
from aifactory.site.options import OptionsError

from .cluster import SiteCluster
from .options import DaskOptions

__all__ = ["SiteCluster", "DaskOptions", "OptionsError", "AccessRefused", "launcher"]


def launcher(**kwargs):
    """The ipywidgets launcher: pick a profile and resources, Start / Scale / Stop, live status."""
    from .widget import Launcher

    return Launcher(**kwargs).view
