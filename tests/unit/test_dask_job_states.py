"""Job states from squeue/sacct, and why a worker is missing, in sentences."""

from aifactory.extensions.dask.cluster import dashboard_url, ended_without_worker
from aifactory.extensions.dask.job_states import (
    JobState,
    explain,
    parse_sacct,
    parse_squeue,
    sacct_argv,
    squeue_argv,
    summarize,
)
from aifactory.extensions.dask.reaper import scancel_argv

SQUEUE = """101|PENDING|Resources|2026-11-25T10:00:00
102|RUNNING|None|2026-11-24T16:00:00
103|PENDING|AssocGrpCpuLimit|N/A
"""
SACCT = """104|FAILED|1:0|00:00:02
105|CANCELLED by 1005|0:15|00:01:00
106|TIMEOUT|0:0|01:00:00
"""


def test_argv_lists():
    assert squeue_argv("student1") == ["squeue", "-h", "-t", "all", "-u", "student1", "-o", "%i|%T|%r|%S"]
    assert sacct_argv(["4", "5"]) == ["sacct", "-n", "-P", "-X", "-j", "4,5", "-o", "JobID,State,ExitCode,Elapsed"]
    assert scancel_argv("student1", "dask-cpu-ab") == ["scancel", "--quiet", "--user", "student1", "--name", "dask-cpu-ab"]


def test_parse():
    assert parse_squeue(SQUEUE)["102"] == JobState("102", "RUNNING", start="2026-11-24T16:00:00")
    assert parse_sacct(SACCT)["105"] == JobState("105", "CANCELLED", exit_code="0:15")


def test_explanations_are_sentences():
    jobs = {**parse_squeue(SQUEUE), **parse_sacct(SACCT)}
    assert explain(jobs["101"]) == (
        "Job 101 is pending: it is waiting for free cores, memory or GPUs on the partition. "
        "Slurm expects it to start at 2026-11-25T10:00:00."
    )
    assert explain(jobs["103"]) == "Job 103 is pending: the project uses all the cores it may use at once."
    assert explain(jobs["104"]) == "Job 104 failed with exit code 1; see the job's log for the error."
    assert explain(jobs["106"]) == "Job 106 was killed at the walltime."
    assert explain(JobState("7", "PENDING", reason="Mystery")) == "Job 7 is pending: Slurm gives the reason Mystery."


def test_summary_explains_only_missing_workers():
    jobs = {**parse_squeue(SQUEUE), **parse_sacct(SACCT)}
    summary = summarize(jobs, ["101", "102", "104"], connected=1, target=3)
    assert (summary.pending, summary.running, summary.connected, summary.missing) == (1, 1, 1, 2)
    assert summary.explanations == (explain(jobs["101"]), explain(jobs["104"]))
    assert summarize(jobs, ["102"], connected=1, target=1).explanations == ()


def test_unknown_states_are_not_gone():
    summary = summarize(None, ["1"], connected=0, target=1)
    assert summary.explanations == ("Slurm did not answer just now; the job states are unknown.",)


def test_ended_jobs_without_a_worker():
    states = {**parse_squeue(SQUEUE), **parse_sacct(SACCT)}
    jobs = {"w0": "102", "w1": "104", "w2": "106", "w3": "999"}
    assert ended_without_worker(jobs, states, connected={"w0", "w2"}) == ["w1"]


def test_dashboard_through_the_hub_proxy():
    assert dashboard_url("/user/student1/", 8787, "http://x:8787/status") == "/user/student1/proxy/8787/status"
    assert dashboard_url(None, 8787, "http://x:8787/status") == "http://x:8787/status"
