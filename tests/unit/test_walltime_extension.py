"""Extending a running server's walltime: the pure decision and its words, the request body, the Slurm
argv and parsers on real output (tests/unit/data/slurm/timelimit/README.md), the state the spawner keeps,
and the I/O around the decision with a stand-in Slurm (the real one: tests/integration/test_walltime_extension.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aifactory.site import parse_site
from aifactory.slurm.runner import Failed, Refused as SlurmRefused
from aifactory.slurm.timelimit import (
    JobLimit, job_limit_argv, parse_job_limit, parse_max_time, partition_argv, update_argv, update_refusal,
)
from aifactory.spawners.cluster_state import AllocationUse, hours_left
from aifactory.spawners.job_state import ServerJob, from_state, to_state
from aifactory.spawners.walltime import MAX_MINUTES, Allowed, Refused, duration, ends_at, extension, parse_body
from aifactory.spawners.walltime_api import Extended, SlurmSilent, extend

from .sites import SMALL_SITE

DATA = Path(__file__).parent / "data" / "slurm" / "timelimit"
FORMAT = "--Format=JobID:0|,State:0|,TimeLimit:0|,StartTime:0|,NumCPUs:0|,Account:0|,Partition:0|,tres-alloc:0|"


def captured(name: str) -> str:
    return (DATA / name).read_text()


# -- Slurm: argv and parsers on the captures -------------------------------------------
def test_the_argv_the_captures_were_made_with():
    assert job_limit_argv("1913") == ["squeue", "--noheader", "--jobs=1913", "--states=all", FORMAT]
    assert partition_argv("standard") == ["scontrol", "--oneliner", "show", "partition", "standard"]
    assert update_argv("1913", 150) == ["scontrol", "update", "JobId=1913", "TimeLimit=02:30:00"]
    assert update_argv("7", 2 * 1440 + 5) == ["scontrol", "update", "JobId=7", "TimeLimit=2-00:05:00"]


@pytest.mark.parametrize("job_id", ["", "12; scancel 1", "1913 TimeLimit=9999", "-1", "12_3"])
def test_only_a_plain_job_id_makes_an_argv(job_id):
    with pytest.raises(ValueError):
        job_limit_argv(job_id)
    with pytest.raises(ValueError):
        update_argv(job_id, 60)


def test_a_time_limit_is_at_least_a_minute():
    with pytest.raises(ValueError):
        update_argv("7", 0)


def test_a_running_job_its_limit_start_cpus_account_and_partition():
    start = datetime(2026, 12, 1, 21, 2, 49)
    assert parse_job_limit(captured("squeue-running-cpu.txt"), "1913") == JobLimit(
        "1913", "RUNNING", 120, start, 1, 0, "project_465000002", "standard")
    assert parse_job_limit(captured("squeue-running-cpu-extended.txt"), "1913").limit_minutes == 150
    assert parse_job_limit(captured("squeue-running-gpu.txt"), "1914") == JobLimit(
        "1914", "RUNNING", 1440, start, 2, 2, "project_465000001", "small-g")


def test_a_pending_and_a_cancelled_job_and_one_slurm_no_longer_lists():
    pending = parse_job_limit(captured("squeue-pending.txt"), "1915")
    assert (pending.state, pending.limit_minutes, pending.start) == ("PENDING", 30, None)  # '30:00' is 30 minutes
    assert parse_job_limit(captured("squeue-cancelled.txt"), "1913").state == "CANCELLED"
    assert parse_job_limit("", "1913") is None
    assert parse_job_limit(captured("squeue-running-gpu.txt"), "1913") is None  # another job's line
    assert "Invalid job id" in captured("squeue-unknown-job.stderr")


def test_an_unlimited_job_has_no_limit_and_a_line_of_another_shape_is_failed():
    line = captured("squeue-running-cpu.txt").replace("|2:00:00|", "|UNLIMITED|")
    assert parse_job_limit(line, "1913").limit_minutes is None
    for wrong in ("1913|RUNNING|2:00:00\n", "1913|RUNNING|2:00:00|N/A|one|p|standard|cpu=1|\n"):
        with pytest.raises(Failed):
            parse_job_limit(wrong, "1913")


def test_the_partitions_max_time():
    assert parse_max_time(captured("scontrol-partition-standard.txt")) == 2 * 1440
    assert parse_max_time(captured("scontrol-partition-interactive.txt")) == 4 * 60
    assert parse_max_time(captured("scontrol-partition-standard.txt").replace("=2-00:00:00", "=UNLIMITED")) is None
    with pytest.raises(Failed):
        parse_max_time("PartitionName=x State=UP")


def test_slurms_refusals_of_an_update_in_their_words():
    assert update_refusal(captured("scontrol-update-finished.stderr")) == "not_running"
    assert update_refusal(captured("scontrol-update-unknown-job.stderr")) == "not_running"
    assert update_refusal(captured("scontrol-update-as-user.stderr")) == "not_operator"
    # ESLURM_INVALID_TIME_LIMIT's text (slurm_errno.c); no update on this cluster prints it (see the README).
    assert update_refusal("Requested time limit is invalid (missing or exceeds some limit) for job 7") \
        == "partition_limit"
    assert update_refusal("Job violates accounting/QOS policy") == "other"


# -- the decision: examples in words ---------------------------------------------------
def test_past_the_profiles_maximum_says_how_much_more_fits():
    refused = extension(23 * 60 + 30, 60, 1440, 2880, 1, 0, None, None, profile="cpu", partition="standard")
    assert refused == Refused("profile_maximum", "The cpu profile allows at most 1-00:00:00; this server already "
                                                 "has 23:30:00, so at most 00:30:00 more.")
    assert extension(23 * 60 + 30, 30, 1440, 2880, 1, 0, None, None) == Allowed(1440, 30)
    full = extension(1440, 1, 1440, 2880, 1, 0, None, None, profile="cpu")
    assert (full.reason, full.message.endswith("so it cannot be extended.")) == ("profile_maximum", True)


def test_past_the_partitions_max_time_when_it_is_the_tighter_limit():
    refused = extension(200, 60, 480, 240, 1, 0, None, None, profile="course", partition="interactive")
    assert refused == Refused("partition_limit", "The interactive partition (its MaxTime in Slurm) allows at "
                                                 "most 04:00:00; this server already has 03:20:00, so at most "
                                                 "00:40:00 more.")
    # Equal limits: the profile is named (the site's checks keep profiles within their partition).
    assert extension(200, 60, 240, 240, 1, 0, None, None).reason == "profile_maximum"
    assert extension(200, 60, 480, None, 1, 0, None, None) == Allowed(260, 60)  # MaxTime UNLIMITED


def test_past_the_sites_session_limit_which_the_culler_enforces():
    refused = extension(11 * 60, 120, 1440, 2880, 1, 0, None, None, profile="cpu", session_max_min=720)
    assert refused == Refused("session_maximum", "This site's session limit (limits.max_session) allows at most "
                                                 "12:00:00; this server already has 11:00:00, so at most 01:00:00 more.")
    assert extension(11 * 60, 60, 1440, 2880, 1, 0, None, None, session_max_min=720) == Allowed(720, 60)


def test_past_the_projects_allocation():
    refused = extension(60, 120, 1440, None, 4, 0, 3.2, None, project="project_465000002")
    assert refused == Refused("allocation", "project_465000002 has 3.2 core-hours left; 2 hours more on 4 CPUs "
                                            "would need 8.0, so at most 48 minutes more.")
    assert extension(60, 48, 1440, None, 4, 0, 3.2, None) == Allowed(108, 48)
    gpus = extension(60, 60, 1440, None, 2, 2, 1000.0, 1.5, project="p")
    assert gpus == Refused("allocation", "p has 1.5 GPU-hours left; 1 hour more on 2 GPUs would need 2.0, "
                                         "so at most 45 minutes more.")
    overdrawn = extension(60, 1, 1440, None, 1, 0, -5.0, None, project="p")
    assert overdrawn == Refused("allocation", "p has 0.0 core-hours left; 1 minute more on 1 CPU would need 0.0.")
    # Both allocations limit a GPU server: the tighter one is named, and what it offers fits both.
    assert extension(1, 2, 60, None, 31, 1, 1.0, 0.0) == Refused(
        "allocation", "The project has 0.0 GPU-hours left; 2 minutes more on 1 GPU would need 0.0.")
    # What the server still has of its limit is charged too: extensions one after another, each fitting on
    # its own, would otherwise spend the same hours again and again.
    assert extension(120, 60, 1440, None, 1, 0, 1.5, None, project="p", still_to_run_min=45) == Refused(
        "allocation", "p has 1.5 core-hours left; the 45 minutes this server still has and 1 hour more on 1 CPU "
                      "would need 1.8, so at most 45 minutes more.")
    assert extension(120, 45, 1440, None, 1, 0, 1.5, None, still_to_run_min=45) == Allowed(165, 45)
    assert extension(60, 60, 1440, None, 1, 0, None, None) == Allowed(120, 60)  # no allocation: no limit
    assert extension(60, 60, 1440, None, 1, 0, 100.0, -1.0) == Allowed(120, 60)  # GPU-hours: only for GPUs


def test_durations_in_words():
    assert [duration(m) for m in (1, 30, 60, 90, 120, 1500)] == [
        "1 minute", "30 minutes", "1 hour", "1 hour 30 minutes", "2 hours", "25 hours"]


# -- the decision: properties -------------------------------------------------------------
minutes = st.integers(min_value=1, max_value=5 * 1440)
hours = st.one_of(st.none(), st.floats(min_value=-100, max_value=10_000, allow_nan=False))


@given(current=minutes, add=minutes, profile_max=minutes, partition_max=st.one_of(st.none(), minutes),
       cpus=st.integers(1, 64), gpus=st.integers(0, 8), cpu_left=hours, gpu_left=hours,
       still=st.integers(0, 5 * 1440))
def test_an_allowed_extension_never_exceeds_any_limit_and_a_refusal_names_one_it_would(
        current, add, profile_max, partition_max, cpus, gpus, cpu_left, gpu_left, still):
    decision = extension(current, add, profile_max, partition_max, cpus, gpus, cpu_left, gpu_left,
                         still_to_run_min=still)
    new = current + add
    over = {
        "profile_maximum": new > profile_max,
        "partition_limit": partition_max is not None and new > partition_max,
        "allocation": (cpu_left is not None and cpus * (still + add) / 60 > cpu_left)
        or (gpus > 0 and gpu_left is not None and gpus * (still + add) / 60 > gpu_left),
    }
    if isinstance(decision, Allowed):
        assert decision == Allowed(new, add)
        assert not any(over.values())
    else:
        assert decision.reason in over and decision.message.endswith(".")
        if decision.reason != "allocation":  # the allocation is checked in whole core-minutes: stricter
            assert over[decision.reason]


@given(current=minutes, add=minutes, profile_max=minutes, partition_max=st.one_of(st.none(), minutes),
       cpus=st.integers(1, 64), gpus=st.integers(0, 8), cpu_left=hours, gpu_left=hours)
def test_less_is_allowed_where_more_is_and_the_most_a_refusal_offers_is_allowed(
        current, add, profile_max, partition_max, cpus, gpus, cpu_left, gpu_left):
    def decide(amount):
        return extension(current, amount, profile_max, partition_max, cpus, gpus, cpu_left, gpu_left)

    decision = decide(add)
    if isinstance(decision, Allowed):
        assert all(isinstance(decide(less), Allowed) for less in {1, add // 2, add - 1} if less >= 1)
    elif decision.message.endswith(" more."):
        fits = _minutes_in(decision.message.rsplit(" at most ", 1)[1].removesuffix(" more."))
        assert 1 <= fits < add
        again = decide(fits)  # what was offered fits that limit; only a limit checked after it may still refuse
        if decision.reason == "allocation":
            assert again == Allowed(current + fits, fits)
        else:
            assert isinstance(again, Allowed) or again.reason == "allocation"


def _minutes_in(text: str) -> int:
    """'00:30:00', '1-02:00:00' or '1 hour 30 minutes' -> minutes."""
    if ":" in text:
        days, _, clock = text.rpartition("-")
        h, m, _ = clock.split(":")
        return int(days or 0) * 1440 + int(h) * 60 + int(m)
    words = text.split()
    return sum(int(n) * (60 if unit.startswith("hour") else 1) for n, unit in zip(words[::2], words[1::2]))


# -- the request body -------------------------------------------------------------------
def test_the_body_is_exactly_a_whole_number_of_minutes():
    assert parse_body({"minutes": 30}) == 30
    assert parse_body({"minutes": MAX_MINUTES}) == MAX_MINUTES


@pytest.mark.parametrize("body", [
    {"minutes": "60; scancel"}, {"minutes": "60"}, {"minutes": 10**9}, {"minutes": -5}, {"minutes": 0},
    {"minutes": 1.5}, {"minutes": True}, {"minutes": None}, {"minutes": 30, "job_id": "1"}, {}, [30], None, 30,
])
def test_anything_else_is_refused(body):
    with pytest.raises(ValueError):
        parse_body(body)


# -- when the job ends, and the state the spawner keeps ------------------------------------
def test_the_end_is_the_start_plus_the_limit_in_utc():
    start = datetime(2026, 12, 1, 21, 2, 49)  # Slurm's local time, naive
    end = ends_at(start, 150)
    assert end.tzinfo is not None and end == start.astimezone() + timedelta(minutes=150)
    assert ends_at(datetime(2026, 12, 1, 21, 0, tzinfo=timezone.utc), 60) == datetime(2026, 12, 1, 22, 0,
                                                                                       tzinfo=timezone.utc)
    assert ends_at(None, 60) is None and ends_at(start, 0) is None


def test_the_time_limit_survives_the_state_and_old_state_still_reads():
    job = ServerJob().submitted("1913", "f00d", 1.0, 120).listening("standard-1", 8888)
    assert to_state(job)["time_limit_minutes"] == 120 and from_state(to_state(job)) == job
    longer = job.extended(150)
    assert from_state(to_state(longer)).time_limit_minutes == 150
    old = {"job_id": "1913", "token_sha256": "f00d", "submitted_at": 1.0, "ip": "standard-1", "port": 8888}
    assert from_state(old) == ServerJob().submitted("1913", "f00d", 1.0).listening("standard-1", 8888)
    assert from_state(old).time_limit_minutes == 0 and "time_limit_minutes" not in to_state(from_state(old))
    assert longer.cleared() == ServerJob()


def test_what_is_left_of_an_allocation():
    assert AllocationUse("p", 96.5, 3.0, 100, 10).cpu_hours_left == 3.5
    assert AllocationUse("p", 96.5, 3.0, 100, 10).gpu_hours_left == 7.0
    assert AllocationUse("p", 120.0, 0.0, 100, None).cpu_hours_left == -20.0
    assert AllocationUse("p", 1.0, 1.0).cpu_hours_left is None and AllocationUse("p", 1.0, 1.0).gpu_hours_left is None


# -- the I/O around the decision, with a stand-in Slurm -------------------------------------
SITE = parse_site(SMALL_SITE)  # proj_a: 100 core-hours; profile small on partition cpu, at most 8:00:00


@dataclass
class FakeSlurm:
    """Answers as the local cluster's Slurm did (the captures' shapes); records every argv."""

    state: str = "RUNNING"
    limit: str = "2:00:00"
    cpus: int = 2
    max_time: str = "1-00:00:00"
    used_core_hours: int = 0
    update_error: str = ""
    # The job started 90 minutes ago: with the 2:00:00 limit it still has 30 minutes to run.
    start: datetime = field(default_factory=lambda: (datetime.now() - timedelta(minutes=90)).replace(microsecond=0))
    calls: list[list[str]] = field(default_factory=list)

    async def run(self, argv, *, timeout=None, input=None, env=None):
        self.calls.append(list(argv))
        if argv[0] == "squeue":
            return (f"42|{self.state}|{self.limit}|{self.start.isoformat()}|{self.cpus}|proj_a|cpu|"
                    f"cpu={self.cpus},mem=1G,node=1,billing={self.cpus}|\n")
        if argv == ["scontrol", "show", "config"]:  # usage tracked: the allocation use is the association manager's
            return "PriorityType            = priority/multifactor\n"
        if argv[2:4] == ["show", "assoc_mgr"]:
            return ("ClusterName=tiny Account=proj_a UserName= Partition= Priority=0 ID=3 "
                    f"GrpTRESMins=cpu=6000({self.used_core_hours * 60}),mem=N(0),gres/gpu=N(0) MaxJobs=\n")
        if argv[:2] == ["scontrol", "--oneliner"]:
            return f"PartitionName=cpu MaxNodes=UNLIMITED MaxTime={self.max_time} MinNodes=0\n"
        if argv[0] == "sacct":
            start = (datetime.now() - timedelta(days=2)).replace(microsecond=0)
            end = start + timedelta(hours=1)
            return (f"7|7|COMPLETED|0:0|proj_a|alice|{start.isoformat()}|{end.isoformat()}|"
                    f"billing=1,cpu={self.used_core_hours},mem=1G,node=1\n" if self.used_core_hours else "")
        if argv[:2] == ["scontrol", "update"]:
            if self.update_error:
                raise SlurmRefused(argv, 1, self.update_error)
            return ""
        raise AssertionError(argv)

    @property
    def updates(self) -> list[list[str]]:
        return [c for c in self.calls if c[:2] == ["scontrol", "update"]]


class FakeSpawner:
    """What `extend` reads of a SiteSlurmSpawner."""

    slurm_timeout = 5.0
    allocation_use_seconds = 0.0  # every test asks accounting afresh
    orm_spawner = None
    log = logging.getLogger("test")
    who = "alice"

    def __init__(self, slurm: FakeSlurm, job: ServerJob = ServerJob().submitted("42", "f00d", 1.0, 120),
                 profile: str = "small"):
        self.slurm_runner, self.job, self.user_options = slurm, job, {"profile": profile}

    def _site(self):
        return SITE


async def test_an_allowed_extension_sets_the_new_limit_and_keeps_it():
    slurm = FakeSlurm()
    spawner = FakeSpawner(slurm)
    result = await extend(spawner, 30)
    assert result == Extended(150, slurm.start.astimezone(timezone.utc) + timedelta(minutes=150), 30)
    assert slurm.updates == [["scontrol", "update", "JobId=42", "TimeLimit=02:30:00"]]
    assert spawner.job.time_limit_minutes == 150


async def test_the_limit_is_read_from_slurm_not_from_the_state():
    slurm = FakeSlurm(limit="7:45:00")  # an operator raised it meanwhile
    spawner = FakeSpawner(slurm)  # the state still says 120
    refused = await extend(spawner, 30)
    assert refused.reason == "profile_maximum" and "already has 07:45:00, so at most 00:15:00 more" in refused.message
    assert slurm.updates == [] and spawner.job.time_limit_minutes == 120


async def test_a_refusal_changes_nothing():
    for slurm, reason in ((FakeSlurm(max_time="2:30:00"), "partition_limit"),
                          (FakeSlurm(used_core_hours=99, cpus=2), "allocation")):
        spawner = FakeSpawner(slurm)
        refused = await extend(spawner, 60)
        assert refused.reason == reason, refused
        assert slurm.updates == [] and spawner.job.time_limit_minutes == 120
    # 1 core-hour on 2 CPUs is 30 minutes: the 30 the server still has; nothing more fits.
    assert refused.message == ("proj_a has 1.0 core-hours left; the 30 minutes this server still has and 1 hour "
                               "more on 2 CPUs would need 3.0.")


async def test_only_a_running_job_is_extended():
    for state in ("PENDING", "COMPLETING", "CANCELLED"):
        slurm = FakeSlurm(state=state)
        refused = await extend(FakeSpawner(slurm), 30)
        assert refused.reason == "not_running" and slurm.updates == []
    assert "still queued" in (await extend(FakeSpawner(FakeSlurm(state="PENDING")), 30)).message
    stopped = FakeSpawner(FakeSlurm(), job=ServerJob(stop_reason="walltime"))
    assert (await extend(stopped, 30)).reason == "not_running"


async def test_slurms_refusal_of_the_update_is_passed_on_in_its_words():
    slurm = FakeSlurm(update_error=captured("scontrol-update-finished.stderr").strip())
    spawner = FakeSpawner(slurm)
    refused = await extend(spawner, 30)
    assert refused == Refused("not_running", "Slurm no longer runs this server's job 42: "
                                             "Job has already finished for job 1913")
    assert spawner.job.time_limit_minutes == 120
    slurm = FakeSlurm(update_error=captured("scontrol-update-as-user.stderr").strip())
    assert (await extend(FakeSpawner(slurm), 30)).reason == "slurm_refused"


async def test_no_answer_from_slurm_is_unknown_never_a_refusal():
    class Silent(FakeSlurm):
        async def run(self, argv, **kwargs):
            from aifactory.slurm.runner import NoAnswer
            raise NoAnswer("squeue did not answer within 5 s")

    with pytest.raises(SlurmSilent):
        await extend(FakeSpawner(Silent()), 30)


async def test_a_project_without_an_allocation_is_not_looked_up():
    slurm = FakeSlurm()
    assert await hours_left(SITE, "proj_other", runner=slurm) == (None, None)
    assert slurm.calls == []
    assert await hours_left(SITE, "proj_a", max_age=0, runner=slurm) == (100.0, None)
