"""Secrets stay secret: no password or token on any process's command line, at any time,
while the cluster is brought up and a server spawns; secrets, state and logs readable only
by whom they belong to. Every process's argv is readable by every user (/proc/PID/cmdline)."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ..conftest import BIN
from .test_spawner_slurm import Hub, cleanup

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

SECRETS = Path("/var/lib/aifactory/secrets")
HUB_STATE = Path("/var/lib/aifactory/hub")
LOGS = Path("/var/log/aifactory")


class ArgvSampler(threading.Thread):
    """Reads every process's command line, over and over, until stopped: what any user could see."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen: set[str] = set()
        self.rounds = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as f:
                            self.seen.add(f.read().replace(b"\0", b" ").decode(errors="replace"))
                    except OSError:
                        pass
            self.rounds += 1

    def stop(self) -> set[str]:
        self._done.set()
        self.join(timeout=10)
        return self.seen


def known_secrets() -> dict[str, str]:
    """Every secret the platform keeps on this machine: name -> value."""
    found = {"slurmdbd database password": (SECRETS / "slurmdbd-db-password").read_text().strip()}
    for line in (SECRETS / "demo-passwords").read_text().splitlines():
        user, password = line.split(" ", 1)
        found[f"password of {user}"] = password.strip()
    for name in ("operator-token", "metrics-token"):
        found[name] = (HUB_STATE / name).read_text().strip()
    return {name: value for name, value in found.items() if len(value) >= 8}


def leaks(seen: set[str], secrets: dict[str, str]) -> list[str]:
    return [f"{name} in: {argv[:200]}" for argv in seen for name, value in secrets.items() if value in argv]


def test_no_secret_on_a_command_line_during_cluster_up(cluster):
    sampler = ArgvSampler()
    sampler.start()
    try:
        subprocess.run([str(BIN / "aifactory"), "cluster", "up"], check=True, capture_output=True, timeout=300)
    finally:
        seen = sampler.stop()
    assert sampler.rounds > 50 and any("mariadb" in argv for argv in seen), "the sampler saw too little"
    assert leaks(seen, known_secrets()) == []


def test_no_token_on_a_command_line_during_a_spawn(hub, operator_token):
    api, user, name = Hub(hub, operator_token), "student2", "secrets"
    sampler = ArgvSampler()
    sampler.start()
    try:
        assert api.spawn(user, name, {"profile": "course"}).status_code in (201, 202)
        api.wait_ready(user, name)
        seen = sampler.stop()
        tokens = _launcher_tokens(user)
        assert tokens, "no launcher of the spawned server found"
        assert sampler.rounds > 50
        assert leaks(seen, {**known_secrets(), **{f"{user}'s server token": t for t in tokens}}) == []
    finally:
        sampler.stop()
        cleanup(api, user, name)


def _launcher_tokens(user: str) -> set[str]:
    """The API tokens in the environments of the user's server launchers (read as root)."""
    tokens = set()
    pids = subprocess.run(["pgrep", "-u", user, "-f", "aifactory.spawners.singleuser"], capture_output=True,
                          text=True).stdout.split()
    for pid in pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        for item in environ:
            if item.startswith(b"JUPYTERHUB_API_TOKEN="):
                tokens.add(item.split(b"=", 1)[1].decode())
    return tokens


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_secrets_state_and_logs_are_readable_by_their_owner_only(cluster):
    assert _mode(SECRETS) == 0o700 and _mode(HUB_STATE) == 0o700
    for path in [*SECRETS.iterdir(), *HUB_STATE.iterdir()]:
        if path.name.endswith(("secret", "token", "passwords", "password")):
            assert _mode(path) & 0o077 == 0, f"{path} is {oct(_mode(path))}"
    assert _mode(Path("/etc/slurm/slurmdbd.conf")) == 0o600  # holds the database password
    for log in LOGS.iterdir():
        assert _mode(log) & 0o007 == 0, f"{log} is readable by everyone ({oct(_mode(log))})"
