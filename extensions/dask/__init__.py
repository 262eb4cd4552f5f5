"""Dask on the supercomputer from a notebook: site-aware Slurm clusters and their launcher widget.

The names below load their module on first use: every user's server imports this package for its
shutdown hook (`server_cleanup`), which must not pay for Dask, dask-jobqueue and the site schema
(about half a CPU-second, an eighth of a server's start) in a server that never makes a cluster.
"""

from importlib import import_module

_EXPORTS = {
    "SiteCluster": "aifactory.extensions.dask.cluster",
    "DaskOptions": "aifactory.extensions.dask.options",
    "OptionsError": "aifactory.site.options",
    "AccessRefused": "aifactory.site.access",
}
__all__ = ["SiteCluster", "DaskOptions", "OptionsError", "AccessRefused", "launcher"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def launcher(**kwargs):
    """The ipywidgets launcher: pick a profile and resources, Start / Scale / Stop, live status."""
    from .widget import Launcher

    return Launcher(**kwargs).view
