"""The spawn page's form and the live cluster facts it shows."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from html.parser import HTMLParser

from aifactory.site import parse_site
from aifactory.spawners import cluster_state
from aifactory.slurm.sinfo import PartitionState, parse_sinfo
from aifactory.spawners.cluster_state import AllocationUse, allocation_uses
from aifactory.site.options import Problem
from aifactory.spawners.form import allocation_words, options_form_html, partition_words
from aifactory.spawners.options import UserFacts, offers

from .sites import SMALL_SITE
from .test_slurm_parsers import captured

SITE = parse_site(SMALL_SITE)
BOB = UserFacts("bob", frozenset({"researchers"}), ("proj_a", "proj_b"), frozenset({"ml101-res"}))
ALICE = UserFacts("alice", frozenset({"students"}), ("proj_a",))

# Real `sinfo` output (Slurm 22.05) of a GPU node half used, an idle CPU node and a drained one.
SINFO = """\
cpu*|c1|idle|0/4/0/4|(null)|gpu:0|0|8192|
cpu*|c2|drain|0/0/4/4|(null)|gpu:0|0|8192|
gpu|g1|mix|2/2/0/4|gpu:a100:2(S:0)|gpu:a100:1(IDX:0)|3072|8192|
"""


class Elements(HTMLParser):
    """Collects (tag, attributes) and the text, to look at the form as a browser would."""

    def __init__(self, html: str):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def test_sinfo_counts_free_capacity_of_usable_nodes_only():
    states = parse_sinfo(SINFO)
    assert states["cpu"] == PartitionState("cpu", nodes=1, idle_nodes=1, idle_cpus=4, cpus=4, free_memory_mib=8192,
                                           drained_nodes=1, free_by_node=((4, 8192, 0),))
    assert states["gpu"] == PartitionState("gpu", nodes=1, idle_nodes=0, idle_cpus=2, cpus=4, free_memory_mib=5120,
                                           free_gpus=1, gpus=2, free_by_node=((2, 5120, 1),))


def test_allocation_use_sums_every_member_of_the_project():
    sacct = ("1|1|COMPLETED|0:0|proj_a|alice|2026-11-24T10:00:00|2026-11-24T12:00:00|cpu=2,mem=2G,node=1\n"
             "2|2|COMPLETED|0:0|proj_a|bob|2026-11-24T10:00:00|2026-11-24T11:00:00|cpu=4,gres/gpu=1,node=1\n"
             "3|3|COMPLETED|0:0|proj_b|bob|2026-11-24T10:00:00|2026-11-24T11:00:00|cpu=8,node=1\n"
             "4|4|PENDING|0:0|proj_a|alice|Unknown|Unknown|\n")
    uses = allocation_uses(SITE, ("proj_a",), sacct, datetime(2026, 1, 1), datetime(2026, 11, 25))
    assert uses == {"proj_a": AllocationUse("proj_a", 8.0, 1.0, cpu_hours=100, gpu_hours=None)}
    assert allocation_words("proj_a", uses["proj_a"]) == "proj_a: 8.0 of 100 core-hours used (92.0 left); 1.0 GPU-hours used"
    assert allocation_words("proj_b", None) == "proj_b"


def test_partition_words_count_nodes_cpus_and_gpus_and_say_whether_the_default_fits_now():
    small, gpu = offers(SITE, BOB)
    states = parse_sinfo(SINFO)
    assert partition_words(small, states["cpu"]) == (
        "1 of 1 node idle · 4 of 4 CPUs free · 8G memory free · 1 node drained", True)
    words, fits = partition_words(gpu, states["gpu"])
    assert words == "0 of 1 node idle · 2 of 4 CPUs free · 5G memory free · 1 of 2 A100 GPUs free" and fits is True
    busy = PartitionState("gpu", nodes=1, idle_cpus=1, cpus=4, free_memory_mib=512, free_gpus=0, gpus=2,
                          free_by_node=((1, 512, 0),))
    assert partition_words(gpu, busy)[1] is False
    assert partition_words(gpu, None) == ("live state unknown: Slurm did not answer", None)
    gone = parse_sinfo("cpu*|c1|down*|0/0/4/4|(null)|gpu:0|0|8192|\ncpu*|c2|down*|0/0/4/4|(null)|gpu:0|0|8192|\n")
    assert partition_words(small, gone["cpu"]) == ("no node of this partition is up · 2 nodes down", False)


def test_a_profile_fits_now_only_if_one_node_has_it_free_not_the_partitions_sum():
    """Two nodes with 1 CPU idle each: a 2-CPU server queues, though the partition has 2 CPUs idle."""
    small, gpu = offers(SITE, BOB)
    two_halves = parse_sinfo("cpu*|c1|mix|3/1/0/4|(null)|gpu:0|1024|8192|\ncpu*|c2|mix|3/1/0/4|(null)|gpu:0|1024|8192|\n"
                             "gpu|g1|mix|2/2/0/4|gpu:a100:2(S:0)|gpu:a100:2(IDX:0-1)|0|8192|\n"
                             "gpu|g2|mix|3/1/0/4|gpu:a100:2(S:0)|gpu:a100:0(IDX:N/A)|0|8192|\n")
    assert two_halves["cpu"].idle_cpus == 2 and partition_words(small, two_halves["cpu"])[1] is True  # 1 CPU each
    assert two_halves["cpu"].fits(2, 1024) is False
    # g1 has the CPUs but no GPU, g2 the GPU but 1 CPU: the GPU profile (2 CPUs, 1 GPU) does not start now.
    assert two_halves["gpu"].idle_cpus == 3 and two_halves["gpu"].free_gpus == 2
    assert partition_words(gpu, two_halves["gpu"]) == (
        "0 of 2 nodes idle · 3 of 8 CPUs free · 16G memory free · 2 of 4 A100 GPUs free", False)


def test_the_demos_cards_count_its_five_nodes_as_sinfo_lists_them(demo_site):
    """The multi-node cluster's real sinfo (tests/unit/data/slurm), as researcher1 (cpu, gpu) and a student (course)
    see it; then standard-2 cut off and interactive-2 drained."""
    researcher = UserFacts("researcher1", frozenset({"researchers"}), ("project_465000001",))
    student = UserFacts("student1", frozenset({"students"}), ("project_465000002",))
    (cpu, gpu), (_, course, _) = offers(demo_site, researcher), offers(demo_site, student)
    live = parse_sinfo(captured("sinfo-nodes.txt"))
    assert partition_words(cpu, live["standard"]) == (
        "0 of 2 nodes idle · 14 of 16 CPUs free · 8960M memory free", True)
    assert partition_words(gpu, live["small-g"]) == (
        "0 of 1 node idle · 7 of 8 CPUs free · 3840M memory free · 2 of 4 MI250X GPUs free", True)
    assert partition_words(course, live["interactive"]) == (
        "1 of 2 nodes idle · 7 of 8 CPUs free · 5888M memory free", True)
    failed = parse_sinfo(captured("sinfo-node-down.txt"))
    assert partition_words(cpu, failed["standard"]) == (
        "0 of 1 node idle · 7 of 8 CPUs free · 4G memory free · 1 node down", True)
    assert partition_words(course, failed["interactive"]) == (
        "0 of 1 node idle · 3 of 4 CPUs free · 2816M memory free · 1 node drained", True)
    page = Elements(options_form_html([cpu, gpu], failed))
    assert "1 node down" in "".join(page.text)  # in words on the card, not only a colour


def test_one_card_per_offered_profile_with_live_state_and_allocations():
    html = options_form_html(offers(SITE, BOB), parse_sinfo(SINFO),
                             {"proj_a": AllocationUse("proj_a", 8.0, 0.0, cpu_hours=100)})
    page = Elements(html)
    radios = page.find("input", type="radio", name="profile")
    assert [r["value"] for r in radios] == ["small", "gpu"]
    assert "checked" in radios[0] and "checked" not in radios[1]
    text = " ".join(page.text)
    assert "1 of 2 A100 GPUs free" in text and "starts now" in text
    assert "Partition cpu: 1 of 1 node idle · 4 of 4 CPUs free · 8G memory free · 1 node drained" in "".join(page.text)
    assert "proj_a: 8.0 of 100 core-hours used (92.0 left)" in text
    assert [o["value"] for o in page.find("option") if o.get("value", "").startswith("proj")] == ["proj_a", "proj_b"]
    assert page.find("input", name="cpus", type="number", min="1", max="4", placeholder="1")
    assert "ml101-res" in text  # bob's reservation is offered


def test_each_field_has_its_limits_and_hint_from_the_spec_and_a_label_for_screen_readers():
    specs = offers(SITE, BOB)
    page = Elements(options_form_html(specs, None, None))
    small = specs[0]
    for name in ("account", "cpus", "memory", "gpus", "walltime", "environment", "reservation"):
        field = small[name]
        (label,) = page.find("label", **{"for": f"input-{name}"})
        (control,) = [a for t, a in page.elements if a.get("id") == f"input-{name}"]
        assert control["name"] == name and control["aria-describedby"] == f"hint-{name}"
        assert field.label in page.text and field.hint in page.text
    assert page.find("input", name="cpus", type="number", min="1", max="4", placeholder="1")
    assert page.find("input", name="memory", placeholder="2G")
    assert page.find("input", name="walltime", placeholder="01:00:00")
    # Every card carries its own limits and hints, from the same spec, for the form's one small script.
    cards = [json.loads(a["data-fields"]) for a in page.find("label") if "data-fields" in a]
    assert cards[1]["gpus"] == {"min": 1, "max": 2, "placeholder": "1", "hint": specs[1]["gpus"].hint,
                                "label": "GPUs (a100)", "hidden": False}
    assert cards[1]["walltime"]["hint"] == "hours:minutes:seconds, up to 12:00:00"
    assert cards[0]["gpus"]["hidden"] is True


def test_a_cpu_only_user_gets_no_gpu_field_and_no_reservation():
    page = Elements(options_form_html(offers(SITE, ALICE), None, None))
    assert "hidden" in page.find("div", id="field-gpus")[0]
    assert not page.find("select", name="reservation")
    assert "live state unknown" in " ".join(page.text)


def test_a_refused_attempt_comes_back_with_its_values_and_every_error_next_to_its_field():
    values = {"profile": "gpu", "cpus": "9", "memory": "30G"}
    errors = [Problem("cpus", "9 is out of range; allowed 1 to 4"), Problem("memory", "30G is out of range; allowed 1G to 8G")]
    page = Elements(options_form_html(offers(SITE, BOB), None, None, values, errors))
    assert "checked" in page.find("input", type="radio", value="gpu")[0]
    assert page.find("input", name="cpus", value="9") and page.find("input", name="memory", value="30G")
    for name, message in errors:
        (error,) = page.find("div", id=f"error-{name}")
        assert error["role"] == "alert" and message in page.text
        (control,) = page.find("input", name=name)
        assert control["aria-describedby"] == f"hint-{name} error-{name}" and control["aria-invalid"] == "true"
    # GPU profile chosen: the GPU field is shown with its range.
    assert "hidden" not in page.find("div", id="field-gpus")[0] and page.find("input", name="gpus", min="1", max="2")


def test_an_error_about_an_unknown_field_is_shown_on_top():
    page = Elements(options_form_html(offers(SITE, BOB), None, None, {}, [Problem("colour", "unknown option")]))
    assert page.find("div", id="error-colour")


def test_everything_shown_is_escaped():
    values = {"memory": '"><script>alert(1)</script>'}
    html = options_form_html(offers(SITE, BOB), None, None, values, [Problem("memory", "<b>bad</b>")])
    assert "<script>alert(1)" not in html and "<b>bad</b>" not in html
    assert "&lt;script&gt;" in html


def test_no_profile_open_says_what_to_do():
    assert "need a project" in options_form_html([])


def test_a_class_opening_the_spawn_page_together_costs_one_scheduler_query(monkeypatch):
    """Thirty spawn pages at once ask for the partitions' state as the spawner does: one `sinfo`."""
    monkeypatch.setattr(cluster_state, "_CACHE", {})
    monkeypatch.setattr(cluster_state, "_LOCKS", {})
    calls = []

    class SlowSinfo:
        async def run(self, argv, *, timeout=None, input=None, env=None):
            calls.append(argv)
            await asyncio.sleep(0.05)
            return SINFO

    async def thirty_students():
        return await asyncio.gather(*(cluster_state.partition_states(runner=SlowSinfo()) for _ in range(30)))

    assert asyncio.run(thirty_students()) == [parse_sinfo(SINFO)] * 30
    assert len(calls) == 1 and calls[0][0] == "sinfo"
