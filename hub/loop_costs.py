"""What the hub's configuration does to keep JupyterHub's one event loop free for requests.

JupyterHub serves every request, commits its database and writes its log from one event loop;
what blocks it delays every user's page and API call. In the 50-server burst of
tests/benchmarks/bench_load.py, py-spy found two costs the configuration can remove:

- SQLite commits (`use_wal`). With SQLite's default rollback journal every commit syncs the
  journal and the database file; while a class's servers start and write to the same disk one
  commit took tens to hundreds of milliseconds, and commits were the largest single block of the
  loop (14 % of its samples). In WAL mode with synchronous=NORMAL a commit appends to the log and
  the disk is synced only at checkpoints. A commit still survives the hub process being killed (it
  is in the log file); only the last commits before a power cut of the hub's machine can be lost,
  and the database stays consistent.
- Debug records nobody reads (`logging_config`). JupyterHub's logger passes everything (DEBUG) and
  its handler drops what is below the log level, so each `app_log.debug` of an API request (the
  scope checks) built a LogRecord for nothing: 3 % of the loop.
"""

from __future__ import annotations

import logging
import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine


def _wal(dbapi_connection, connection_record) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):  # another database (PostgreSQL in Kubernetes): as is
        dbapi_connection.execute("PRAGMA journal_mode=WAL")  # kept in the file
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")  # per connection


def use_wal() -> None:
    """Every SQLite connection SQLAlchemy opens in this process from now on: the write-ahead log and
    NORMAL syncing. A listener on every engine, not JupyterHub's db_kwargs, so that a configuration
    loaded after this one may still point the hub at another database (the Helm chart does)."""
    if not event.contains(Engine, "connect", _wal):
        event.listen(Engine, "connect", _wal)


def logging_config(level: str | int = "INFO") -> dict:
    """JupyterHub's `logging_config`: its logger (and so tornado's, which JupyterHub sets to the same level)
    at `level`, the log level its handler already has, so debug calls cost a level check only."""
    return {"loggers": {"JupyterHub": {"level": logging.getLevelName(level) if isinstance(level, int) else level}}}
