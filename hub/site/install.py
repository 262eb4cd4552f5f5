"""Where the platform is installed, found one way: from the environment this code runs in.

The hub, the users' servers, their kernels, Dask workers and grading jobs all run from one
shared Python environment (`make python` makes it at PREFIX/venv, on a file system every node
mounts), so `sys.prefix` of any of them names it; its parent holds the proxy (node/) and the
Lmod module (modules/). Nothing else (an environment variable, a constant) says where it is.
"""

from __future__ import annotations

import sys
from pathlib import Path


def shared_environment() -> Path:
    """The shared Python environment: the one this process runs in."""
    return Path(sys.prefix)


def shared_python() -> str:
    """Its interpreter, spelled the same everywhere (the sudo rule compares it as text)."""
    return str(shared_environment() / "bin" / "python3")


def install_prefix() -> Path:
    """The folder that holds the shared environment, the proxy and the Lmod module."""
    return shared_environment().parent
