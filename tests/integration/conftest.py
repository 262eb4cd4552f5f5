"""Fixtures the integration tests share (the cluster, the hub and the users are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from .test_spawner_slurm import Hub


@pytest.fixture
def api(hub, operator_token) -> Hub:
    """The hub's REST API as the operator's service (admin scopes)."""
    return Hub(hub, operator_token)
