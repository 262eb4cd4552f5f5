"""What #15's faster server start and hub database add, attacked by a second real user (student2).

Every user's server reads the shared environment's start-up pieces (the `.pth` that keeps jsonschema's
IRI parsers out, the server config that leaves unused extensions off, the page config that hides
nbgrader, the checkout's compiled bytecode): a user who could write one of them would run code in
every other user's server. The hub's SQLite database now keeps a write-ahead log beside it, which
holds recent rows (users, hashed tokens, servers) until a checkpoint.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from aifactory.hub.config import HubPaths
from aifactory.spawners import singleuser

from .test_exchange_permissions import as_user, denied

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

VENV = Path(sysconfig.get_path("data"))


def start_up_files() -> list[Path]:
    """The files every server's start reads from the shared environment (each must exist: installed by make)."""
    files = [Path(sysconfig.get_path("purelib")) / "aifactory-server-start.pth",
             Path(sysconfig.get_path("purelib")) / "aifactory-private-caches.pth",
             VENV / "etc/jupyter/aifactory-student/labconfig/page_config.json",
             VENV / "etc/jupyter/jupyter_server_config.py",
             VENV / "etc/jupyter/aifactory-no-nbgrader/labconfig/page_config.json",
             next((Path(singleuser.__file__).parent / "__pycache__").glob("singleuser.*.pyc"))]  # the launcher
    assert all(f.is_file() for f in files), files
    return files


def test_another_user_cannot_change_what_every_server_runs_at_start(hub):
    for path in start_up_files():
        assert denied("student2", "sh", "-c", f"echo 'import os' >> {path}"), path
        assert denied("student2", "sh", "-c", f"echo x > {path.parent}/student2-was-here.pth"), path.parent
        assert not (path.parent / "student2-was-here.pth").exists()


def test_another_user_reads_nothing_of_the_hubs_database_or_its_write_ahead_log(hub):
    state = Path(HubPaths().state)
    wal = [state / "jupyterhub.sqlite", state / "jupyterhub.sqlite-wal", state / "jupyterhub.sqlite-shm"]
    assert all(p.exists() for p in wal), wal  # the hub runs in WAL mode
    for path in wal:
        assert denied("student2", "head", "-c", "1", str(path)), path
    assert as_user("student2", "ls", str(state), check=False).returncode != 0
