"""Spawn options: every field checked against the site's options spec and the user's Slurm facts."""

from __future__ import annotations

import re
import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifactory.site import parse_site
from aifactory.slurm.projects import parse_associations
from aifactory.spawners.facts import parse_id, parse_reservations
from aifactory.site.options import Field, Problem
from aifactory.spawners.options import (
    OptionsError,
    UserFacts,
    ValidatedOptions,
    offers,
    payload_from_form,
    refusal_message,
    validate,
)
from aifactory.spawners.script import HOME_LINES, build_job

from .sites import SMALL_SITE

SITE = parse_site(SMALL_SITE)
ALICE = UserFacts("alice", frozenset({"students"}), ("proj_a",))
BOB = UserFacts("bob", frozenset({"researchers"}), ("proj_a", "proj_b"), frozenset({"ml101-res"}))


def error_of(facts, payload) -> OptionsError:
    with pytest.raises(OptionsError) as caught:
        validate(SITE, facts, payload)
    return caught.value


def test_defaults_of_the_first_allowed_profile():
    assert validate(SITE, ALICE, {}) == ValidatedOptions(
        profile="small", partition="cpu", account="proj_a", cpus=1, memory_mib=2048, gpus=0, gpu_type=None,
        walltime_minutes=60, environment="base",
    )


def test_a_full_gpu_request():
    options = validate(SITE, BOB, {"profile": "gpu", "account": "proj_b", "cpus": "4", "memory": "6G", "gpus": 2,
                                   "gpu_type": "a100", "walltime": "12:00:00", "reservation": "ml101-res",
                                   "partition": "gpu", "environment": "base"})
    assert options == ValidatedOptions(profile="gpu", partition="gpu", account="proj_b", cpus=4, memory_mib=6144,
                                       gpus=2, gpu_type="a100", walltime_minutes=720, environment="base",
                                       reservation="ml101-res")


@pytest.mark.parametrize("payload, field, words", [
    ({"cpus": 5}, "cpus", "allowed 1 to 4"),
    ({"cpus": "two"}, "cpus", "whole number from 1 to 4"),
    ({"cpus": True}, "cpus", "whole number"),
    ({"memory": "5G"}, "memory", "allowed 1G to 4G"),
    ({"memory": "lots"}, "memory", "like '2G'"),
    ({"walltime": "9:00:00"}, "walltime", "allowed 00:01:00 to 08:00:00"),
    ({"gpus": 1}, "gpus", "allowed 0 to 0"),
    ({"profile": "gpu"}, "profile", "choose one of: small"),
    ({"account": "proj_b"}, "account", "choose one of: proj_a"),
    ({"partition": "gpu"}, "partition", "choose one of: cpu"),
    ({"reservation": "ml101-res"}, "reservation", "choose one of: none"),
    ({"environment": "conda"}, "environment", "choose one of: base"),
    ({"image": "evil"}, "image", "unknown option"),
    ({"cmd": ["/bin/sh"]}, "cmd", "unknown option"),
])
def test_a_bad_value_names_the_field_and_what_is_allowed(payload, field, words):
    ((named, message),) = error_of(ALICE, payload).problems
    assert named == field
    assert words in message


def test_every_wrong_field_is_refused_at_once_and_the_hub_says_so():
    error = error_of(BOB, {"profile": "gpu", "cpus": 9, "walltime": "13:00:00", "colour": "red"})
    assert [p.field for p in error.problems] == ["colour", "cpus", "walltime"]
    assert refusal_message(error) == (
        "Invalid options 'colour': unknown option; allowed options: profile, partition, account, cpus, memory, gpus, "
        "gpu_type, walltime, reservation, environment; 'cpus': 9 is out of range; allowed 1 to 4; "
        "'walltime': 13:00:00 is out of range; allowed 00:01:00 to 12:00:00")
    assert refusal_message(error_of(ALICE, {"cpus": 99})) == "Invalid option 'cpus': 99 is out of range; allowed 1 to 4"


def test_a_profile_not_offered_is_named_with_the_unknown_fields():
    assert error_of(ALICE, {"profile": "gpu", "colour": "red", "cpus": 99}).problems == (
        Problem("colour", "unknown option; allowed options: profile, partition, account, cpus, memory, gpus, gpu_type, "
                          "walltime, reservation, environment"),
        Problem("profile", "'gpu' is not allowed; choose one of: small"),
    )


def test_walltime_up_to_the_partition_maximum():
    assert offers(SITE, BOB)[1]["walltime"].max == 720
    assert error_of(BOB, {"profile": "gpu", "walltime": "13:00:00"}).problems == (
        Problem("walltime", "13:00:00 is out of range; allowed 00:01:00 to 12:00:00"),)


def test_no_account_no_server():
    assert [p.field for p in error_of(UserFacts("carol", frozenset({"students"})), {}).problems] == ["account"]
    assert offers(SITE, UserFacts("carol")) == []


def test_offers_list_the_profiles_with_their_ranges():
    (small,) = offers(SITE, ALICE)
    assert small.profile == "small"
    assert small["cpus"] == Field("cpus", "CPUs", "count", 1, 4, 1, unit="CPUs", hint="1 to 4; empty means 1",
                                  example="2")
    assert (small["memory"].min, small["memory"].max, small["memory"].default) == (1024, 4096, 2048)
    assert (small["gpus"].min, small["gpus"].max) == (0, 0)
    assert [o.profile for o in offers(SITE, BOB)] == ["small", "gpu"]
    assert offers(SITE, BOB)[1].gpu_type == "a100"
    assert offers(SITE, BOB)[1]["reservation"].choices == ("ml101-res",)


def test_form_fields_arrive_as_lists():
    assert payload_from_form({"profile": ["small"], "cpus": ["2"], "memory": [""]}) == {"profile": "small", "cpus": "2"}
    with pytest.raises(OptionsError, match="exactly once") as caught:
        payload_from_form({"cpus": ["1", "2"], "gpus": [], "memory": ["1G"]})
    assert [p.field for p in caught.value.problems] == ["cpus", "gpus"]


def test_slurm_associations_default_first():
    assert parse_associations("proj_a|proj_b\nproj_a|proj_a\nproj_a|proj_b\n") == ("proj_a", "proj_b")
    assert parse_associations("") == ()


def test_reservations_of_a_user_or_their_accounts():
    text = ("ReservationName=ml101 StartTime=2026-01-01T10:00:00 State=ACTIVE Users=alice,bob Accounts=(null)\n"
            "ReservationName=other State=ACTIVE Users=carol Accounts=proj_z\n"
            "ReservationName=byacct State=INACTIVE Users=(null) Accounts=proj_a\n")
    assert parse_reservations(text, "alice", ("proj_x",)) == {"ml101"}
    assert parse_reservations(text, "dave", ("proj_a",)) == {"byacct"}
    assert parse_reservations("No reservations in the system\n", "alice", ()) == frozenset()


# --- property: any payload is refused or yields only allowed values in a safe script ---

texts = st.one_of(st.text(max_size=80), st.sampled_from(["small", "gpu", "proj_a", "proj_b", "a100", "cpu", "base",
                                                         "ml101-res", "2G", "4:00:00", "1", "0", "$(reboot)",
                                                         "'; rm -rf ~", "1\n#SBATCH --uid=0"]))
values = st.one_of(texts, st.integers(-10, 10_000), st.booleans(), st.none(), st.floats(allow_nan=True),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
keys = st.one_of(st.sampled_from(["profile", *offers(SITE, BOB)[0].names]), st.text(max_size=20))


@settings(max_examples=400, deadline=None)
@given(payload=st.dictionaries(keys, values, max_size=8), facts=st.sampled_from([ALICE, BOB]))
def test_any_payload_is_refused_or_allowed(payload, facts):
    try:
        options = validate(SITE, facts, payload)
    except OptionsError as error:
        assert error.problems and all(p.field and p.message for p in error.problems)
        return
    (offer,) = [o for o in offers(SITE, facts) if o.profile == options.profile]
    assert options.partition == offer.partition
    assert options.account in facts.accounts
    assert offer["cpus"].min <= options.cpus <= offer["cpus"].max
    assert offer["memory"].min <= options.memory_mib <= offer["memory"].max
    assert offer["gpus"].min <= options.gpus <= offer["gpus"].max
    assert offer["walltime"].min <= options.walltime_minutes <= offer["walltime"].max
    assert options.environment in offer["environment"].choices
    assert options.reservation in (None, *facts.reservations)
    job = build_job(options, SITE.environment(options.environment), user=facts.name,
                    env_names=["PATH"], launcher=["/opt/v/bin/python", "-m", "launcher"], server_args=[])
    for line in job.script.splitlines():
        assert line.startswith(("#!/bin/bash", "#SBATCH --", "set -eo", "export ", "exec ")) \
            or line in HOME_LINES, line
        if line.startswith("exec "):
            shlex.split(line)  # well-formed: every word quoted
    for value in payload.values():
        if isinstance(value, str) and re.search(r"[^A-Za-z0-9:._-]", value.strip()):
            assert value.strip() not in job.script  # nothing odd a user typed reaches the script


def test_groups_come_from_id_output_primary_and_supplementary():
    assert parse_id("uid=1003(student3) gid=1003(student3) groups=1003(student3),1001(students),"
                    "1010(course-dask-scaling)\n") == (1003, {"student3", "students", "course-dask-scaling"})
    assert parse_id("uid=0(root) gid=0(root) groups=0(root)\n") == (0, {"root"})
    with pytest.raises(ValueError, match="not the output of id"):
        parse_id("id: 'nobody-here': no such user\n")
