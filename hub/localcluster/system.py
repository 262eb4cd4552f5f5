"""Small, bounded helpers for talking to the operating system (the I/O edge)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

from aifactory.site.files import atomic_write
from aifactory.site.processes import pid_alive


class ProvisionError(RuntimeError):
    """A step of bringing the local cluster up failed; the message says which and why."""


def run(argv: list[str], *, check: bool = True, timeout: float = 60, input: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv (never through a shell); on failure raise with its stderr."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, env=env)
    except FileNotFoundError:
        raise ProvisionError(f"{argv[0]} is not installed (run `make install` first)") from None
    except subprocess.TimeoutExpired:
        raise ProvisionError(f"`{' '.join(argv)}` did not finish within {timeout:.0f}s") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise ProvisionError(f"`{' '.join(argv)}` failed ({proc.returncode}): {detail}")
    return proc


def pid_from(pidfile: str | Path) -> int | None:
    """The live process a pid file names, or None."""
    try:
        pid = int(Path(pidfile).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def stop_pid(pid: int, timeout: float = 20) -> None:
    """SIGTERM, wait, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_for(lambda: not pid_alive(pid), timeout):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_for(lambda: not pid_alive(pid), 5)


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    """Poll condition until true or timeout; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return True
        except ProvisionError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def write_if_changed(path: str | Path, text: str, mode: int = 0o644,
                     check: Callable[[Path], object] | None = None) -> bool:
    """Write text atomically when it differs (`check` sees the new file first, as `atomic_write`'s);
    returns whether the file changed."""
    path = Path(path)
    if path.exists() and path.read_text() == text:
        os.chmod(path, mode)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, mode, check)
    return True


def secret_file(path: str | Path, nbytes: int = 24) -> str:
    """A root-only secret, generated on first use and kept afterwards."""
    path = Path(path)
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(nbytes)
    write_if_changed(path, value + "\n", mode=0o600)
    return value


def spawn_daemon(argv: list[str], log: str | Path, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None) -> int:
    """Start a long-running process in its own session, detached from ours."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    # Root's only: a daemon's log names users, addresses and sometimes what they sent.
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, cwd=cwd)
    return proc.pid
