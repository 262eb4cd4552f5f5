"""Slurm from a hub that runs away from the cluster (in Kubernetes): every Slurm command over SSH.

The hub talks to Slurm only through its spawners' `SlurmRunner`: sbatch as the user (through
sudo), scancel, the poller's squeue and sacct, and the sacctmgr/scontrol of a user's facts.
With `RemoteSlurmSpawner.slurm_access = "ssh"` that runner's route is an
`aifactory.slurm.runner.SshRoute` built from the ssh_* traits, and each of those argv lists
runs unchanged on a login node:

    ssh -T -o BatchMode=yes ... -p 22 -l jupyterhub login1.example.org -- 'sudo -E -u alice sbatch --parsable'

(`SshRoute` says how: every word quoted for the login node's shell, the job's environment by
`SendEnv` and never on a command line, the host key checked against the operator's
known_hosts, ssh's own failures meaning "no answer", never "job gone".)

- The route is hub-wide configuration: the hub's one shared poller takes the runner of the
  first spawner that asks for it, which is the same route as every other spawner's.
- The hub needs no user's home or shell: the job finds its home itself (`script.HOME_LINES`),
  and its environment gets USER from the hub, HOME and SHELL from the node (`user_env`).

The default, `slurm_access = "local"`, leaves everything as `SiteSlurmSpawner` does it.
"""

from __future__ import annotations

from traitlets import Enum, Integer, Unicode

from aifactory.slurm.runner import LOCAL, Route, SshRoute

from .slurm import SiteSlurmSpawner


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

    def slurm_route(self) -> Route:
        """Over ssh to the login node when slurm_access='ssh' (ValueError for settings ssh would misread)."""
        if self.slurm_access != "ssh":
            return LOCAL
        return SshRoute(
            login_node=self.ssh_login_node, user=self.ssh_user, identity_file=self.ssh_identity_file,
            known_hosts_file=self.ssh_known_hosts_file, port=self.ssh_port,
            connect_timeout=self.ssh_connect_timeout,
        )

    def user_env(self, env: dict) -> dict:
        """Over SSH only USER: the job's node sets HOME and SHELL (Slurm loads the user's environment
        when --export names variables), so the hub looks nobody up. batchspawner's HOME from the hub's
        user directory would also not reach the job (sshd accepts only JUPYTERHUB_*, JPY_*), and
        `sudo -E` would hand it the login account's HOME instead."""
        if self.slurm_access != "ssh":
            return super().user_env(env)
        env["USER"] = self.user.name
        return env


__all__ = ["RemoteSlurmSpawner"]
