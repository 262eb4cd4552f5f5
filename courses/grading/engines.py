"""One SQLAlchemy engine per gradebook URL for the whole process.

nbgrader opens a new ``Gradebook`` (hence a new engine) several times per
notebook it autogrades, and SQLAlchemy keeps its cache of compiled statements on
the engine: every student paid for compiling the same queries again, which was
most of nbgrader's own CPU time per student. With the engine shared, statements
are compiled once per process. ``Gradebook.close()`` still disposes of the
engine's connections, so no connection outlives a ``with Gradebook(...)`` block.
"""

from __future__ import annotations

_engines: dict[str, object] = {}


def share_engines() -> None:
    """Make nbgrader.api reuse one engine per database URL (idempotent)."""
    import nbgrader.api as api

    if getattr(api.create_engine, "_aifactory_shared", False):
        return
    create = api.create_engine

    def shared(url, **kwargs):
        key = f"{url}|{sorted(kwargs.items())}"
        if key not in _engines:
            _engines[key] = create(url, **kwargs)
        return _engines[key]

    shared._aifactory_shared = True
    api.create_engine = shared
