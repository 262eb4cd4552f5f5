"""Running Slurm's commands: argv lists, a timeout, and errors that say what happened."""

from __future__ import annotations

import asyncio
from typing import Callable

# Where Slurm's commands run: None here; `remote.SshAccess` on a login node over ssh
# (set by `remote.RemoteSlurmSpawner` for a hub in Kubernetes). Takes argv and variable names.
via: Callable[[list[str], list[str]], list[str]] | None = None


class CommandFailed(RuntimeError):
    """The command ran and said no (non-zero exit); `stderr` says why."""

    def __init__(self, argv: list[str], returncode: int, stderr: str):
        super().__init__(f"{argv[0]} exited {returncode}: {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr.strip()


class SchedulerUnavailable(RuntimeError):
    """No answer (timeout, controller down, command missing): the state is unknown, not gone."""


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        proc.kill()
    except ProcessLookupError:  # it ended meanwhile
        pass


async def run(argv: list[str], timeout: float, input: str | None = None, env: dict | None = None) -> str:
    """Run `argv` (no shell) and return stdout; kill it after `timeout` seconds."""
    if via is not None:
        argv = via(argv, sorted(env or ()))
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    except OSError as error:
        raise SchedulerUnavailable(f"cannot run {argv[0]}: {error}") from error
    try:
        out, err = await asyncio.wait_for(proc.communicate(input.encode() if input is not None else None), timeout)
    except asyncio.TimeoutError:
        _kill(proc)
        await proc.wait()
        raise SchedulerUnavailable(f"{argv[0]} did not answer within {timeout:g} s") from None
    except asyncio.CancelledError:
        _kill(proc)
        raise
    if proc.returncode != 0:
        stderr = err.decode(errors="replace")
        if via is not None and proc.returncode == 255:  # ssh itself failed: no answer, not a refusal
            raise SchedulerUnavailable(f"login node did not answer: {stderr.strip()}")
        if "Unable to contact slurm controller" in stderr or "Socket timed out" in stderr or \
                "Connection refused" in stderr or "slurmdbd" in stderr.lower() and "connect" in stderr.lower():
            raise SchedulerUnavailable(stderr.strip())
        raise CommandFailed(argv, proc.returncode, stderr)
    return out.decode(errors="replace")
