"""The home page's session cards (hub/session_cards.py): what each state of a server reads as."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from aifactory.hub.session_cards import build_card, cards_of, duration_words, final_state_of, ordinal
from aifactory.site import load_site
from aifactory.spawners.job_state import ServerJob, from_state, to_state
from aifactory.spawners.poller import JobView
from aifactory.spawners.progress import stop_message

DEMO = Path(__file__).resolve().parents[2] / "hub" / "site" / "demo.yaml"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def site():
    return load_site(DEMO)


def card(site, name="gpu", options=None, job=ServerJob(), view=None, ready=False, pending=None, ends_at=None):
    return build_card(user="researcher1", name=name, options=options if options is not None else
                      {"profile": "gpu", "cpus": "4", "memory": "3G", "gpus": "2", "walltime": "1:00:00"},
                      job=job, view=view, ready=ready, pending=pending, ends_at=ends_at, site=site,
                      base_url="/hub/", server_url="/user/researcher1/gpu/", now=NOW)


def test_ordinals_and_durations_read_as_words():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]
    assert duration_words(30) == "less than a minute"
    assert duration_words(42 * 60 + 59) == "42 min"
    assert duration_words(2 * 3600 + 5 * 60) == "2 h 5 min"


def test_a_queued_server_says_why_and_its_place_in_the_partition(site):
    view = JobView("pending", "41", "PENDING", "Resources", partition="small-g", position=3, pending_total=5,
                   start_estimate=(NOW + timedelta(minutes=30)).astimezone().replace(tzinfo=None))
    queued = card(site, job=ServerJob(job_id="41", awaiting_port=True), view=view, pending="spawn")
    assert (queued.state, queued.state_text) == ("queued", "Queued")
    assert queued.detail.startswith("waiting for resources")
    assert "3rd of 5 in small-g" in queued.detail
    assert "Slurm expects it to start at" in queued.detail
    assert (queued.can_open, queued.can_stop, queued.can_extend, queued.can_start_again) == (False, True, False, False)
    assert queued.job_id == "41" and queued.node == "" and queued.time_left == ""


def test_a_new_job_not_yet_looked_at_reads_as_waiting_for_the_scheduler(site):
    view = JobView("pending", "41", "PENDING", "", partition="small-g")
    assert card(site, job=ServerJob(job_id="41"), view=view, pending="spawn").detail == \
        "waiting for the scheduler to look at it"


def test_a_job_slurm_started_whose_server_has_not_answered_is_starting_on_its_node(site):
    view = JobView("running", "41", "RUNNING", node="small-g-1", partition="small-g")
    starting = card(site, job=ServerJob(job_id="41", awaiting_port=True), view=view, pending="spawn")
    assert starting.state == "starting" and starting.node == "small-g-1"
    assert "small-g-1" in starting.detail and not starting.can_open and starting.can_stop


def test_a_running_server_shows_its_resources_node_and_time_left(site):
    view = JobView("running", "41", "RUNNING", node="small-g-1", partition="small-g")
    running = card(site, job=ServerJob(job_id="41", node="small-g-1", port=4000), view=view, ready=True,
                   ends_at=NOW + timedelta(minutes=83))
    assert running.state == "running" and running.detail == "Running on small-g-1"
    assert (running.profile, running.partition, running.node) == ("GPU notebook (MI250X)", "small-g", "small-g-1")
    assert (running.cpus, running.memory, running.gpus) == ("4", "3G", "2 × mi250x")
    assert running.time_left == "1 h 23 min" and running.ends_at == (NOW + timedelta(minutes=83)).timestamp()
    assert (running.can_open, running.can_stop, running.can_extend, running.can_start_again) == (True, True, True, False)
    assert running.open_url == "/user/researcher1/gpu/"
    assert running.walltime_url == "/hub/api/aifactory/users/researcher1/servers/gpu/walltime"


def test_an_end_in_slurms_local_time_counts_like_an_aware_one(site):
    local = (NOW + timedelta(minutes=10)).astimezone().replace(tzinfo=None)
    running = card(site, job=ServerJob(job_id="41", node="n", port=1), ready=True, ends_at=local)
    assert running.time_left == "10 min"


def test_empty_fields_show_the_profiles_defaults(site):
    running = card(site, options={"profile": "cpu"}, job=ServerJob(job_id="7"), ready=True)
    assert (running.profile, running.partition, running.cpus, running.memory, running.gpus, running.walltime) == \
        ("CPU notebook", "standard", "1", "2G", "none", "04:00:00")
    assert running.time_left == ""  # no end known: the template says so


def test_options_the_site_no_longer_allows_are_shown_as_they_were_saved(site):
    old = card(site, options={"profile": "cpu", "cpus": "64", "memory": "1G"})
    assert (old.profile, old.cpus, old.memory) == ("CPU notebook", "64", "1G")
    gone = card(site, options={"profile": "retired", "cpus": "2"})
    assert (gone.profile, gone.cpus) == ("retired", "2")
    # Starting them again would only be refused: the card offers the spawn page with them filled in instead.
    assert not old.can_start_again and not gone.can_start_again and gone.prefill == "profile=retired&cpus=2"


def test_a_stopped_server_says_slurms_final_state_after_its_state_was_cleared(site):
    reason = stop_message("NODE_FAIL", "41", "small-g-1")
    job = from_state(to_state(ServerJob(job_id="41", job_status="NODE_FAIL", stop_reason=reason).cleared()))
    stopped = card(site, job=job)
    assert stopped.state == "stopped" and stopped.final_state == "NODE_FAIL"
    assert stopped.detail == reason and "node small-g-1" in stopped.detail
    assert (stopped.can_open, stopped.can_stop, stopped.can_extend, stopped.can_start_again, stopped.can_delete) == \
        (False, False, False, True, True)
    assert stopped.time_left == "" and stopped.node == ""


def test_final_state_comes_from_the_saved_status_first_and_never_from_other_brackets():
    assert final_state_of(ServerJob(job_status="TIMEOUT", stop_reason="x [CANCELLED]")) == "TIMEOUT"
    assert final_state_of(ServerJob(stop_reason="did not start in time")) == ""
    assert final_state_of(ServerJob(stop_reason="see [the log file]")) == ""


def test_start_again_and_the_link_carry_exactly_the_saved_options(site):
    options = {"profile": "gpu", "cpus": "4", "memory": "3G", "gpus": "2", "walltime": "1:00:00", "account": "p",
               "unexpected": "x", "environment": ""}
    stopped = card(site, options=options)
    assert stopped.options == (("profile", "gpu"), ("account", "p"), ("cpus", "4"), ("memory", "3G"),
                               ("gpus", "2"), ("walltime", "1:00:00"))
    assert stopped.prefill == "profile=gpu&account=p&cpus=4&memory=3G&gpus=2&walltime=1%3A00%3A00"
    assert stopped.spawn_url == "/hub/spawn/researcher1/gpu"


def test_the_default_server_has_its_own_urls_and_label(site):
    default = card(site, name="", ready=True, job=ServerJob(job_id="1", node="n", port=1))
    assert (default.label, default.slug, default.can_delete) == ("Default server", "default", False)
    assert default.spawn_url == "/hub/spawn/researcher1"
    assert default.walltime_url == "/hub/api/aifactory/users/researcher1/server/walltime"


def test_a_server_never_started_offers_its_spawn_page_only(site):
    new = card(site, options={})
    assert new.state == "stopped" and new.detail == "Not started yet"
    assert not new.can_start_again and new.prefill == "" and new.profile == "(no options saved)"


def test_a_stopping_server_offers_nothing_but_its_state(site):
    stopping = card(site, job=ServerJob(job_id="41"), ready=True, pending="stop")
    assert stopping.state == "stopping"
    assert not (stopping.can_open or stopping.can_stop or stopping.can_extend or stopping.can_start_again)


class _Orm:
    """A stopped server as JupyterHub yields it: the database row."""

    def __init__(self, name, state, user_options):
        self.name, self.state, self.user_options = name, state, user_options


class _Spawner:
    """A live server as JupyterHub yields it: the Spawner object, with the poller's view of its job."""

    def get_state(self):
        return {}

    def __init__(self, name, job, view):
        self.name, self.job, self.user_options = name, job, {"profile": "cpu"}
        self.ready, self.pending = False, "spawn"
        self.poller = type("P", (), {"view": lambda _self, job_id: view})()


class _User:
    name = "student1"

    def __init__(self, spawners):
        self._spawners = spawners

    def all_spawners(self):
        return iter(self._spawners)

    def server_url(self, name):
        return f"/user/student1/{name + '/' if name else ''}"


def test_cards_of_reads_live_spawners_and_stopped_rows_default_first(site):
    live = _Spawner("b", ServerJob(job_id="9"), JobView("pending", "9", "PENDING", "Priority", partition="standard",
                                                         position=1, pending_total=2))
    row = _Orm("a", to_state(ServerJob(stop_reason=stop_message("TIMEOUT", "8"))), {"profile": "cpu"})
    default = _Orm("", {}, {})
    cards = cards_of(_User([live, row, default]), site)("/hub/")
    assert [(c.label, c.state) for c in cards] == [("Default server", "stopped"), ("a", "stopped"), ("b", "queued")]
    assert cards[1].final_state == "TIMEOUT"
    assert "1st of 2 in standard" in cards[2].detail
    assert cards_of(None, site)("/hub/") == []


def test_a_server_whose_details_cannot_be_read_still_has_a_card(site):
    broken = _Spawner("c", ServerJob(job_id="9"), None)
    broken.poller = None
    broken.job = "not a job"
    broken.get_state = lambda: {"job_id": "9", "submitted_at": "yesterday"}  # from_state cannot read it
    (only,) = cards_of(_User([broken]), site)("/hub/")
    assert (only.label, only.state, only.can_stop) == ("c", "starting", True)
    assert "could not read" in only.detail
