"""Slurm from a hub that runs away from the cluster (in Kubernetes): every Slurm command over SSH.

The hub talks to Slurm only through `slurmcli.run`: sbatch as the user (through sudo),
scancel, the poller's squeue and sacct, and the sacctmgr/scontrol of a user's facts. With
`RemoteSlurmSpawner.slurm_access = "ssh"`, `slurmcli.via` is set to an `SshAccess`, and each
of those argv lists runs unchanged on a login node:

    ssh -T -o BatchMode=yes ... -p 22 -l jupyterhub login1.example.org -- 'sudo -E -u alice sbatch --parsable'

- The remote command is `shlex.join(argv)`: ssh hands a command line to the login node's
  shell, so every word is quoted and none is split or interpreted there.
- The environment the job needs (JupyterHub's API token and URLs) travels with `SendEnv`,
  never on the command line (where `ps` on the login node would show the token); the login
  node's sshd accepts it with `AcceptEnv JUPYTERHUB_* JPY_*`.
- The host key is checked against a known_hosts file the operator provides; a key that does
  not match is refused (no trust on first use).
- ssh's own failures (exit 255: unreachable, key refused) mean "the scheduler did not
  answer": state unknown, never "job gone" (`slurmcli.SchedulerUnavailable`).
- The hub needs no user's home or shell: the job finds its home itself (`script.HOME_LINES`),
  and its environment gets USER from the hub, HOME and SHELL from the node (`user_env`).

The default, `slurm_access = "local"`, leaves everything as `SiteSlurmSpawner` does it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from traitlets import Enum, Integer, Unicode

from . import slurmcli
from .slurm import SiteSlurmSpawner

SSH = "ssh"


@dataclass(frozen=True)
class SshAccess:
    """How the hub reaches a login node: as `user` with the key in `identity_file`."""

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
        """The ssh argv that runs `argv` on the login node, passing the named variables."""
        send_env = [option for name in sorted(env_names) for option in ("-o", f"SendEnv={name}")]
        return [
            SSH,
            "-T",
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

    __call__ = argv


class RemoteSlurmSpawner(SiteSlurmSpawner):
    """`SiteSlurmSpawner` whose Slurm commands run here (`local`) or on a login node over SSH (`ssh`)."""

    slurm_access = Enum(
        ["local", "ssh"], "local", config=True,
        help="How the hub reaches Slurm: 'local' runs the commands here (the hub is on a login node); "
        "'ssh' runs them on ssh_login_node (a hub in Kubernetes). Applies to the whole hub.",
    )
    ssh_login_node = Unicode("", config=True, help="Login node that runs the Slurm commands when slurm_access='ssh'.")
    ssh_user = Unicode(
        "", config=True,
        help="Account on the login node; it runs squeue/sacct/scancel and may `sudo -E -u USER sbatch`.",
    )
    ssh_port = Integer(22, min=1, max=65535, config=True, help="sshd port of the login node.")
    ssh_identity_file = Unicode("", config=True, help="Private key of ssh_user (mounted from a Secret).")
    ssh_known_hosts_file = Unicode(
        "", config=True, help="known_hosts with the login node's host key; other keys are refused.",
    )
    ssh_connect_timeout = Integer(10, min=1, config=True, help="Seconds ssh may take to connect.")

    def ssh_access(self) -> SshAccess:
        return SshAccess(
            login_node=self.ssh_login_node, user=self.ssh_user, identity_file=self.ssh_identity_file,
            known_hosts_file=self.ssh_known_hosts_file, port=self.ssh_port,
            connect_timeout=self.ssh_connect_timeout,
        )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Hub-wide, like the shared poller: the same access for every command of every spawner.
        slurmcli.via = self.ssh_access() if self.slurm_access == "ssh" else None

    def user_env(self, env: dict) -> dict:
        """Over SSH only USER: the job's node sets HOME and SHELL (Slurm loads the user's environment
        when --export names variables), so the hub looks nobody up. batchspawner's HOME from the hub's
        user directory would also not reach the job (sshd accepts only JUPYTERHUB_*, JPY_*), and
        `sudo -E` would hand it the login account's HOME instead."""
        if self.slurm_access != "ssh":
            return super().user_env(env)
        env["USER"] = self.user.name
        return env


__all__ = ["SshAccess", "RemoteSlurmSpawner"]
