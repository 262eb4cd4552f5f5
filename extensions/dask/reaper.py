"""A watchdog that cancels a cluster's Slurm jobs when the process that owns them is gone.

atexit closes clusters when a kernel exits normally; this covers the rest: a
kernel killed with SIGKILL, a server stopped, a job of the user's server
cancelled. It runs in its own session, so signals aimed at the kernel's
process group do not reach it, and cancels on SIGTERM too. Then it removes
the cluster's TLS credentials (`tls`), which nothing may use any more.

    python -m aifactory.extensions.dask.reaper OWNER_PID USER JOB_NAME [CREDENTIALS_DIR]
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from aifactory.site.processes import pid_alive
from aifactory.slurm.runner import SlurmError, SlurmRunner

from . import tls

POLL_SECONDS = 1.0
READY = "armed"


def scancel_argv(user: str, job_name: str) -> list[str]:
    return ["scancel", "--quiet", "--user", user, "--name", job_name]


def cancel(user: str, job_name: str, attempts: int = 5, runner: SlurmRunner = SlurmRunner(timeout=30)) -> None:
    """scancel with retries: a busy slurmctld must not leave jobs behind."""
    for attempt in range(attempts):
        try:
            runner.run_sync(scancel_argv(user, job_name))
            return
        except SlurmError:
            time.sleep(2**attempt)


def watch(owner: int, user: str, job_name: str, credentials: str | None = None) -> None:
    def end() -> None:
        cancel(user, job_name)
        if credentials:
            tls.remove_credentials(Path(credentials))

    def on_term(signum, frame):
        end()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(READY, flush=True)  # armed: the owner may submit jobs now
    sys.stdout.close()
    while pid_alive(owner):
        time.sleep(POLL_SECONDS)
    end()


def start_reaper(user: str, job_name: str, credentials: Path | None = None, timeout: float = 20) -> subprocess.Popen:
    """Start the watchdog for this process's cluster `job_name`; return once it is armed (the edge).

    Jobs must not be submitted before: a SIGTERM that arrives earlier would end
    the watchdog without cancelling anything.
    """
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "aifactory.extensions.dask.reaper", str(os.getpid()), user, job_name,
            *([str(credentials)] if credentials else []),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().decode().strip() if ready else ""
    proc.stdout.close()
    if line != READY:
        proc.kill()
        proc.wait()
        raise RuntimeError("The watchdog that cancels the cluster's jobs if this kernel dies did not start.")
    return proc


if __name__ == "__main__":
    pid, user_name, name = sys.argv[1:4]
    watch(int(pid), user_name, name, sys.argv[4] if len(sys.argv) > 4 else None)
