"""`aifactory site install` gives every user's Dask the site's defaults."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import BIN

pytestmark = pytest.mark.slurm

CHECK = (
    "import dask.config as c; "
    "print(c.get('labextension.factory.class'), c.get('jobqueue.cpu.queue'), c.get('jobqueue.gpu.queue'))"
)


def test_a_users_dask_uses_the_site_cluster_and_profiles(cluster):
    result = subprocess.run(["sudo", "-u", "student1", "-H", str(BIN / "python"), "-c", CHECK],
                            capture_output=True, text=True, cwd="/", timeout=60)
    assert result.stdout.split() == ["SiteCluster", "standard", "small-g"], result.stderr
