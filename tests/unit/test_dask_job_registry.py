"""Clusters record their Slurm job names; the server extension cancels those of its own server when it stops."""

from __future__ import annotations

import json
import subprocess
import sys

from aifactory.extensions.dask import job_registry, server_cleanup
from aifactory.extensions.dask.server_cleanup import DaskCleanup, _jupyter_server_extension_points


def test_record_and_choice_of_what_to_cancel():
    mine = job_registry.record("dask-cpu-aaaa", "student1", "42", 100, "nid001")
    other_server = job_registry.record("dask-cpu-bbbb", "student1", "43", 101, "nid001")
    outside = job_registry.record("dask-cpu-cccc", "student1", None, 102, "nid002")
    assert mine == {
        "job_name": "dask-cpu-aaaa", "user": "student1", "server_job": "42", "owner_pid": 100, "host": "nid001"
    }
    assert job_registry.to_cancel([mine, other_server, outside], "42") == [mine]
    assert job_registry.to_cancel([mine, other_server, outside], None) == [outside]


def test_records_of_dead_owners_on_this_host_are_orphans():
    mine = job_registry.record("dask-cpu-aaaa", "student1", "42", 100, "nid001")
    dead_here = job_registry.record("dask-cpu-bbbb", "student1", "43", 101, "nid001")
    alive_here = job_registry.record("dask-cpu-cccc", "student1", None, 102, "nid001")
    dead_elsewhere = job_registry.record("dask-cpu-dddd", "student1", None, 101, "nid002")
    records = [mine, dead_here, alive_here, dead_elsewhere]
    assert job_registry.orphaned(records, "42", "nid001", lambda pid: pid != 101) == [dead_here]


def test_current_server_job_from_slurm_environment():
    assert job_registry.current_server_job({"SLURM_JOB_ID": "7"}) == "7"
    assert job_registry.current_server_job({}) is None


def test_register_read_and_forget(tmp_path):
    directory = tmp_path / "dask-jobs"
    entry = job_registry.record("dask-cpu-aaaa", "student1", "42", 100, "nid001")
    job_registry.register(directory, entry)
    (directory / "broken.json").write_text("{not json")
    assert job_registry.registered(directory) == [entry]
    job_registry.unregister(directory, "dask-cpu-aaaa")
    job_registry.unregister(directory, "dask-cpu-aaaa")  # idempotent
    assert job_registry.registered(directory) == []


def test_cleanup_cancels_only_this_servers_clusters(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(server_cleanup, "cancel", lambda user, name, attempts: calls.append((user, name)))
    monkeypatch.setattr(server_cleanup, "pid_alive", lambda pid: pid != 102)
    job_registry.register(tmp_path, job_registry.record("dask-cpu-aaaa", "student1", "42", 100, "nid001"))
    job_registry.register(tmp_path, job_registry.record("dask-cpu-bbbb", "student1", "43", 101, "nid001"))
    job_registry.register(tmp_path, job_registry.record("dask-cpu-cccc", "student1", None, 102, "nid001"))
    assert server_cleanup.cancel_registered(tmp_path, "42", "nid001") == ["dask-cpu-aaaa", "dask-cpu-cccc"]
    assert calls == [("student1", "dask-cpu-aaaa"), ("student1", "dask-cpu-cccc")]
    assert [e["job_name"] for e in job_registry.registered(tmp_path)] == ["dask-cpu-bbbb"]


def test_extension_point_and_shipped_config_enable_it():
    from importlib.resources import files

    assert _jupyter_server_extension_points() == [
        {"module": "aifactory.extensions.dask.server_cleanup", "app": DaskCleanup}
    ]
    shipped = files("aifactory.extensions.dask") / "jupyter-config" / "aifactory-dask-cleanup.json"
    assert json.loads(shipped.read_text()) == {
        "ServerApp": {"jpserver_extensions": {"aifactory.extensions.dask.server_cleanup": True}}
    }


def test_the_servers_hooks_do_not_load_dask_or_the_site_schema():
    """Every user's server imports the cleanup hook and the workbench at start: Dask, dask-jobqueue and the
    site schema (pydantic) cost half a CPU-second there and serve only a notebook that makes a cluster."""
    code = ("import sys, aifactory.extensions.dask.server_cleanup, aifactory.extensions.workbench.handlers\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'distributed', 'dask', 'dask_jobqueue', 'pydantic'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
