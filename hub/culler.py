"""Run jupyterhub-idle-culler as a child that dies with its hub.

JupyterHub starts managed services in their own session; a hub that is killed
(SIGKILL, OOM) leaves them running against the next hub. Here the kernel sends
SIGTERM to the culler when its parent ends (Linux PR_SET_PDEATHSIG), then the
culler's own main runs with the same arguments.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the hub's own cleanup still stops it
        return
    if os.getppid() != parent:  # the hub ended before the request took effect
        sys.exit(0)


def main() -> None:
    die_with_parent()
    from jupyterhub_idle_culler import main as culler_main

    culler_main()


if __name__ == "__main__":
    main()
