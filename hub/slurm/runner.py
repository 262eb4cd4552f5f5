"""Running Slurm's commands: argv lists, a timeout, a route, and one vocabulary of failure.

Every part of the platform that talks to Slurm (spawner, poller, Dask job states, grading,
usage, the local cluster's checks) runs its commands through a `SlurmRunner`, so a command
that does not answer, one that Slurm refuses and one that fails mean the same everywhere:

- `NoAnswer`: no answer in time, the controller or slurmdbd unreachable, the command could not
  start, the login node did not answer. The state is unknown, never "the job is gone".
- `Refused`: Slurm answered and said no (non-zero exit); `stderr` (and, for sacctmgr,
  `stdout`) holds its reason.
- `Failed`: Slurm answered but what it said cannot be used (killed by a signal, output a
  parser does not understand).

Where the commands run is a route object passed in (`LOCAL`, or an `SshRoute` to a login node
for a hub in Kubernetes), never a module-global switch.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Protocol


class SlurmError(RuntimeError):
    """A Slurm command did not give a usable answer; the subclass says how."""


class NoAnswer(SlurmError):
    """No answer (timeout, controller down, command missing, login node unreachable): state unknown."""


class Refused(SlurmError):
    """The command ran and Slurm said no (non-zero exit); `stderr` says why (sacctmgr: `stdout`)."""

    def __init__(self, argv: list[str], returncode: int, stderr: str, stdout: str = ""):
        super().__init__(f"{argv[0]} exited {returncode}: {stderr.strip() or stdout.strip()}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        self.stdout = stdout.strip()


class Failed(SlurmError):
    """Slurm answered, but with something that cannot be used (a crash, output no parser understands)."""


# What Slurm's client commands print when the controller or slurmdbd did not answer (Slurm's
# slurm_errno.c wording, and the socket errors it passes on): the request may have been taken
# (an sbatch's job queued), so it is no answer, never a refusal.
_UNREACHABLE = (
    "Unable to contact slurm controller",  # (connect / send / receive / shutdown failure)
    "controller not responding",  # sbatch: "Slurm controller not responding, sleeping and retrying"
    "in standby mode",  # "Slurm backup controller in standby mode", "Controller is in standby mode, ..."
    "Socket timed out",  # "Socket timed out on send/recv operation"
    "Zero Bytes were transmitted or received",
    "Communication connection failure",
    "Communication shutdown failure",
    "Message send failure",
    "Message receive failure",
    "Connection refused",
    "Connection timed out",
    "Connection reset by peer",
    "Transport endpoint is not connected",
    "Unable to connect to database",
    "slurmdbd: Connection",
)


class Route(Protocol):
    """Where a command runs: turns argv (and the names of variables it needs) into what to exec."""

    def argv(self, argv: list[str], env_names: list[str]) -> list[str]: ...

    def unreachable(self, returncode: int) -> bool:
        """Whether this exit status is the route's own failure (no answer), not the command's."""


@dataclass(frozen=True)
class LocalRoute:
    """The commands run on this machine (a hub on a login node, a job on a compute node)."""

    def argv(self, argv: list[str], env_names: list[str]) -> list[str]:
        return list(argv)

    def unreachable(self, returncode: int) -> bool:
        return False


LOCAL = LocalRoute()


@dataclass(frozen=True)
class SshRoute:
    """Each command on a login node over ssh, as `user` with the key in `identity_file`.

    The remote command is `shlex.join(argv)` (ssh hands a line to the login node's shell, so
    every word is quoted); the job's environment travels with `SendEnv`, never in argv; the
    host key must match `known_hosts_file` (no trust on first use); ssh's own exit 255 is
    "no answer"."""

    login_node: str
    user: str
    identity_file: str
    known_hosts_file: str
    port: int = 22
    connect_timeout: int = 10

    def __post_init__(self):
        for name in ("login_node", "user", "identity_file", "known_hosts_file"):
            value = getattr(self, name)
            if not value or value.startswith("-") or any(c.isspace() for c in value):
                raise ValueError(f"SSH access needs a plain {name}, got {value!r}")

    def argv(self, argv: list[str], env_names: list[str] = ()) -> list[str]:
        send_env = [option for name in sorted(env_names) for option in ("-o", f"SendEnv={name}")]
        return [
            "ssh", "-T",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts_file}",
            "-o", f"ConnectTimeout={self.connect_timeout}",
            "-o", "IdentitiesOnly=yes",
            "-o", "LogLevel=ERROR",
            "-i", self.identity_file,
            "-p", str(self.port),
            *send_env,
            "-l", self.user,
            self.login_node,
            "--",
            shlex.join(argv),
        ]

    def unreachable(self, returncode: int) -> bool:
        return returncode == 255


def classify(argv: list[str], returncode: int, stderr: str, route: Route = LOCAL,
             stdout: str = "") -> SlurmError | None:
    """What an exit status and stderr mean: None for success, else the error to raise."""
    if returncode == 0:
        return None
    text = stderr.strip()
    if route.unreachable(returncode):
        return NoAnswer(f"login node did not answer: {text}")
    if any(marker in text for marker in _UNREACHABLE):
        return NoAnswer(text)
    if returncode < 0:
        return Failed(f"{argv[0]} was killed by signal {-returncode}: {text}")
    return Refused(argv, returncode, text, stdout)


@dataclass(frozen=True)
class SlurmRunner:
    """Runs Slurm commands along `route`, each killed after `timeout` seconds unless told otherwise."""

    route: Route = field(default=LOCAL)
    timeout: float = 30.0

    async def run(self, argv: list[str], *, timeout: float | None = None, input: str | None = None,
                  env: dict[str, str] | None = None) -> str:
        """Run `argv` (no shell) and return its stdout, or raise NoAnswer / Refused / Failed."""
        limit = self.timeout if timeout is None else timeout
        command = self.route.argv(list(argv), sorted(env or ()))
        try:
            proc = await asyncio.create_subprocess_exec(
                *command, env=env,
                stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
            )
        except OSError as error:
            raise NoAnswer(f"cannot run {command[0]}: {error}") from error
        try:
            out, err = await asyncio.wait_for(proc.communicate(input.encode() if input is not None else None), limit)
        except asyncio.TimeoutError:
            _kill(proc.pid)
            await proc.wait()
            raise NoAnswer(f"{argv[0]} did not answer within {limit:g} s") from None
        except asyncio.CancelledError:
            _kill(proc.pid)
            raise
        stdout = out.decode(errors="replace")
        error = classify(argv, proc.returncode, err.decode(errors="replace"), self.route, stdout)
        if error is not None:
            raise error
        return stdout

    def run_sync(self, argv: list[str], *, timeout: float | None = None, input: str | None = None,
                 env: dict[str, str] | None = None) -> str:
        """`run` for code that is not in an event loop (a CLI, a kernel's widget, a grading job)."""
        limit = self.timeout if timeout is None else timeout
        command = self.route.argv(list(argv), sorted(env or ()))
        try:
            proc = subprocess.Popen(command, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                                    env=env, start_new_session=True)
        except OSError as error:
            raise NoAnswer(f"cannot run {command[0]}: {error}") from error
        with proc:
            try:
                out, err = proc.communicate(input, timeout=limit)
            except subprocess.TimeoutExpired:
                _kill(proc.pid)
                proc.communicate()
                raise NoAnswer(f"{argv[0]} did not answer within {limit:g} s") from None
            except BaseException:  # interrupted (Ctrl-C): take the command down too
                _kill(proc.pid)
                raise
        error = classify(argv, proc.returncode, err, self.route, out)
        if error is not None:
            raise error
        return out


def _kill(pid: int) -> None:
    """Kill the command and whatever it started (its own session), so that no pipe stays open."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # it ended meanwhile
        pass
    except PermissionError:  # a child under another uid (sudo -u): the command itself still goes
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
