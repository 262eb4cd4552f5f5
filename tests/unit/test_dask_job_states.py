"""Job states from squeue/sacct, and why a worker is missing, in sentences."""

from aifactory.extensions.dask.cluster import dashboard_url, ended_without_worker
from aifactory.extensions.dask.job_states import (
    JobState,
    explain,
    from_accounting,
    from_queue,
    query_job_states,
    summarize,
)
from aifactory.extensions.dask.reaper import scancel_argv
from aifactory.slurm.runner import NoAnswer
from aifactory.slurm.sacct import parse_sacct
from aifactory.slurm.squeue import parse_squeue
from aifactory.spawners.progress import pending_message, stop_message

# The formats of aifactory.slurm's squeue_argv and sacct_argv (real output: tests/unit/data/slurm/).
SQUEUE = """101|N/A|PENDING|Resources||2026-11-25T10:00:00|standard|100|2026-11-24T15:00:00|student1
102|N/A|RUNNING|None|nid001|2026-11-24T16:00:00|standard|100|2026-11-24T15:00:00|student1
103|N/A|PENDING|AssocGrpCpuLimit||N/A|standard|100|2026-11-24T15:00:00|student1
"""
SACCT = """104|104|FAILED|1:0|proj|student1|2026-11-24T16:00:00|2026-11-24T16:00:02|cpu=1
105|105|CANCELLED by 1005|0:15|proj|student1|2026-11-24T16:00:00|2026-11-24T16:01:00|cpu=1
106|106|TIMEOUT|0:0|proj|student1|2026-11-24T16:00:00|2026-11-24T17:00:00|cpu=1
"""


def states() -> dict[str, JobState]:
    return {**{k: from_queue(v) for k, v in parse_squeue(SQUEUE).items()},
            **{r.job_id: from_accounting(r) for r in parse_sacct(SACCT)}}


def test_argv_lists():
    assert scancel_argv("student1", "dask-cpu-ab") == ["scancel", "--quiet", "--user", "student1", "--name", "dask-cpu-ab"]


def test_states_from_the_queue_and_from_accounting():
    jobs = states()
    assert jobs["102"] == JobState("102", "RUNNING", start="2026-11-24T16:00:00")
    assert jobs["105"] == JobState("105", "CANCELLED", exit_code="0:15")


def test_explanations_are_sentences_in_the_words_the_spawner_uses():
    jobs = states()
    assert explain(jobs["101"]) == (
        "Job 101 is pending: waiting for resources: the CPUs, memory or GPUs you asked for are in use. "
        "Slurm expects it to start at 2026-11-25T10:00:00."
    )
    assert explain(jobs["103"]) == ("Job 103 is pending: waiting: your project's limit is reached "
                                    "(AssocGrpCpuLimit): the project uses all the cores it may use at once.")
    assert explain(jobs["104"]) == "Job 104 stopped: it failed with exit code 1; see the job's log for the error."
    assert explain(jobs["106"]) == "Job 106 stopped: the walltime ran out."
    assert explain(JobState("7", "PENDING", reason="Mystery")) == "Job 7 is pending: waiting (Mystery)."
    assert explain(JobState("8", "OUT_OF_MEMORY")) == "Job 8 stopped: it ran out of memory; ask for more memory per worker."
    # The same words as the hub's progress page and stop message.
    assert pending_message("Resources", None, None, "", None, None).removeprefix("Pending: ") in explain(jobs["101"])
    assert stop_message("TIMEOUT", "106").split("stopped: ")[1].removesuffix(" [TIMEOUT]") in explain(jobs["106"])


class Slurm:
    """A runner answering squeue and sacct from text, or not at all."""

    def __init__(self, squeue: str | None, sacct: str | None):
        self.answers, self.asked = {"squeue": squeue, "sacct": sacct}, []

    async def run(self, argv, *, timeout=None, input=None, env=None):
        self.asked.append(argv)
        if self.answers[argv[0]] is None:
            raise NoAnswer(f"{argv[0]} did not answer")
        return self.answers[argv[0]]


async def test_query_asks_accounting_only_for_jobs_that_left_the_queue():
    slurm = Slurm(SQUEUE, SACCT)
    jobs = await query_job_states("student1", ["101", "104", "106"], runner=slurm)
    assert {k: jobs[k].state for k in ("101", "104", "106")} == {"101": "PENDING", "104": "FAILED", "106": "TIMEOUT"}
    assert "--user=student1" in slurm.asked[0] and "--jobs=104,106" in slurm.asked[1]


async def test_a_silent_squeue_is_unknown_and_a_silent_sacct_leaves_what_the_queue_said():
    assert await query_job_states("student1", ["101"], runner=Slurm(None, SACCT)) is None
    jobs = await query_job_states("student1", ["101", "104"], runner=Slurm(SQUEUE, None))
    assert set(jobs) == {"101"}


def test_summary_explains_only_missing_workers():
    jobs = states()
    summary = summarize(jobs, ["101", "102", "104"], connected=1, target=3)
    assert (summary.pending, summary.running, summary.connected, summary.missing) == (1, 1, 1, 2)
    assert summary.explanations == (explain(jobs["101"]), explain(jobs["104"]))
    assert summarize(jobs, ["102"], connected=1, target=1).explanations == ()


def test_unknown_states_are_not_gone():
    summary = summarize(None, ["1"], connected=0, target=1)
    assert summary.explanations == ("Slurm did not answer just now; the job states are unknown.",)


def test_ended_jobs_without_a_worker():
    known = states()
    jobs = {"w0": "102", "w1": "104", "w2": "106", "w3": "999"}
    assert ended_without_worker(jobs, known, connected={"w0", "w2"}) == ["w1"]


def test_dashboard_through_the_hub_proxy():
    assert dashboard_url("/user/student1/", 8787, "http://x:8787/status") == "/user/student1/proxy/8787/status"
    assert dashboard_url(None, 8787, "http://x:8787/status") == "http://x:8787/status"
