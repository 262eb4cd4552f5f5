"""What keeps the hub's event loop free (hub/loop_costs.py): SQLite in WAL mode, no debug records for nothing."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys

import pytest
from jupyterhub import orm
from jupyterhub.app import JupyterHub
from sqlalchemy import event
from sqlalchemy.engine import Engine
from traitlets.config import Config

from aifactory.hub import loop_costs


@pytest.fixture
def wal():
    loop_costs.use_wal()
    loop_costs.use_wal()  # twice: one listener
    yield
    event.remove(Engine, "connect", loop_costs._wal)
    assert not event.contains(Engine, "connect", loop_costs._wal)


def test_jupyterhubs_sqlite_database_runs_in_wal_mode_with_normal_syncing(wal, tmp_path):
    db = orm.new_session_factory(f"sqlite:///{tmp_path}/hub.sqlite")()
    assert db.execute(orm.text("PRAGMA journal_mode")).scalar() == "wal"
    assert db.execute(orm.text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    assert db.execute(orm.text("PRAGMA foreign_keys")).scalar() == 1  # JupyterHub's own listener still runs
    db.close()


def test_a_commit_survives_the_hub_process_being_killed(wal, tmp_path):
    """A server's job id is committed once sbatch answers; a hub killed right after must find it."""
    path = tmp_path / "hub.sqlite"
    hub = subprocess.Popen([sys.executable, "-c", f"""
import os, signal, sys
from jupyterhub import orm
from aifactory.hub.loop_costs import use_wal
use_wal()
db = orm.new_session_factory("sqlite:///{path}")()
db.add(orm.User(name="alice"))
db.commit()
print("committed", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""], stdout=subprocess.PIPE, text=True)
    assert hub.stdout.readline().strip() == "committed"
    assert hub.wait(30) == -9
    assert (tmp_path / "hub.sqlite-wal").exists()  # the commit is in the log, not yet in the file
    with sqlite3.connect(path) as reader:  # as the restarted hub opens it
        assert reader.execute("SELECT name FROM users").fetchall() == [("alice",)]



@pytest.mark.parametrize("level", ["INFO", 10])
def test_jupyterhubs_debug_calls_build_no_record_below_the_log_level(level, capsys):
    """JupyterHub's logger passes DEBUG to a handler that drops it: every request's scope check built a record
    for nothing. At the log level, a debug call is a level check; what the log level shows is still shown."""
    config = Config()
    config.JupyterHub.log_level = level
    config.JupyterHub.logging_config = loop_costs.logging_config(level)
    app = JupyterHub(config=config)
    try:
        app.init_logging()
        # JupyterHub's own logger, and tornado's (its scope checks log to tornado.application), which it sets alike
        for logger in (app.log, logging.getLogger("tornado")):
            assert logger.isEnabledFor(logging.DEBUG) is (level == 10)
        app.log.info("shown")
        logging.getLogger("tornado.access").info("a request")
        err = capsys.readouterr().err
        assert "shown" in err and "a request" in err
    finally:
        JupyterHub.clear_instance()
