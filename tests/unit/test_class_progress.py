"""The class progress page's pure parts (counting, histogram bins, page policy), its readers on a
tmp exchange and a real nbgrader gradebook, the fetch record, and the shared cached reading."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from aifactory.courses import class_progress
from aifactory.courses.class_progress import Bin, Graded, histogram, read_gradebook, student_entries, summarize
from aifactory.courses.exchange import transfer
from aifactory.courses.exchange.layout import CoursePaths
from aifactory.hub.class_progress import Cached, json_for_script, page_policy, render_page


def counts(bins: list[Bin]) -> list[int]:
    return [b.count for b in bins]


def test_histogram_bins_of_ten_points_with_100_in_the_last():
    bins = histogram([0.0, 9.99, 10.0, 55.0, 89.9, 90.0, 100.0])
    assert [(b.low, b.high) for b in bins] == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60),
                                              (60, 70), (70, 80), (80, 90), (90, 100)]
    assert counts(bins) == [2, 1, 0, 0, 0, 1, 0, 0, 1, 2]


def test_histogram_of_nobody_and_of_scores_outside_0_to_100():
    assert counts(histogram([])) == [0] * 10
    assert counts(histogram([-5.0, 120.0])) == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]   # extra credit: the last bar
    assert counts(histogram([49.0, 51.0], width=50)) == [1, 1]


def test_summarize_counts_the_roster_per_assignment():
    progress = summarize(
        "c", "A course", roster=["s1", "s2", "s3"],
        released=["a1", "a2", "new"],
        fetched={"s1": {"a1", "a2"}, "s2": {"a1"}, "s3": set(), "outsider": {"a1"}},
        # s3 submitted a1 without a fetch record (fetched before records existed): a hand-in shows they had it.
        submitted={"s1": {"a1"}, "s3": {"a1", "made-up"}, "outsider": {"a1"}},
        gradebook=[("a1", 4.0), ("a2", 2.0)],
        graded=[Graded("s1", "a1", 4.0, 4.0), Graded("s3", "a1", 1.0, 4.0, needs_manual_grade=True),
                Graded("outsider", "a1", 0.0, 4.0)],
    )
    assert progress.students == 3
    rows = {a.name: a for a in progress.assignments}
    assert [a.name for a in progress.assignments] == ["a1", "a2", "new"]   # the gradebook's order, then by name
    a1 = rows["a1"]
    assert (a1.fetched, a1.submitted, a1.graded, a1.needs_manual_grade) == (3, 2, 2, 1)
    assert a1.max_score == 4.0 and a1.mean_percent == pytest.approx(62.5)
    assert counts(a1.bins) == [0, 0, 1, 0, 0, 0, 0, 0, 0, 1]
    assert (rows["a2"].fetched, rows["a2"].submitted, rows["a2"].graded, rows["a2"].mean_percent) == (1, 0, 0, None)
    assert rows["new"].max_score is None and rows["new"].released and rows["a1"].released
    assert "made-up" not in rows    # a student's folder adds no row
    assert json.loads(json.dumps(progress.as_json()))["assignments"][0]["bins"][9] == {"low": 90, "high": 100,
                                                                                         "count": 1}


def test_a_course_with_nothing_released_has_no_rows():
    assert summarize("c", "t", ["s1"], [], {}, {}, [], []).assignments == []


# ---- the exchange: the fetch record and the reader ------------------------------------------------

@pytest.fixture
def course(tmp_path) -> CoursePaths:
    paths = CoursePaths("c", courses_root=tmp_path / "courses", exchange_root=tmp_path / "exchange",
                        max_submission_bytes=2**20)
    for folder in (paths.course_dir, paths.outbound, paths.inbound):
        Path(folder).mkdir(parents=True)
    for student in ("s1", "s2"):
        Path(paths.inbound_of(student)).mkdir()
    release = Path(paths.outbound) / "a"
    release.mkdir()
    (release / "a.ipynb").write_text("{}")
    (Path(paths.outbound) / ".a.0.1.new").mkdir()     # a release being staged is not an assignment
    return paths


def test_a_fetch_leaves_a_record_in_the_students_own_inbound_folder(course, tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "me", lambda: "s1")
    transfer.fetch(course, "a", tmp_path / "home")
    record = Path(course.inbound_of("s1")) / ".fetched+a"
    assert stat.S_IMODE(record.lstat().st_mode) == 0o640
    first = record.read_text()
    transfer.parse_timestamp(first)
    # Fetched again after moving the work away: the first fetch is kept.
    (tmp_path / "home" / "a").rename(tmp_path / "moved")
    transfer.fetch(course, "a", tmp_path / "home")
    assert record.read_text() == first
    assert not (Path(course.inbound_of("s2")) / ".fetched+a").exists()
    # Someone with no inbound folder in the course (a trainer trying the release) records nothing.
    monkeypatch.setattr(transfer, "me", lambda: "trainer")
    transfer.fetch(course, "a", tmp_path / "trainer-home")
    assert not (Path(course.inbound) / "trainer").exists()
    assert transfer.record_fetch(course, "a") is False
    monkeypatch.setattr(transfer, "me", lambda: "s2")
    assert transfer.record_fetch(course, "../s1/x") is False and transfer.record_fetch(course, ".hidden") is False
    assert sorted(os.listdir(course.inbound_of("s2"))) == []


def test_the_reader_counts_a_students_own_entries_only(course, monkeypatch):
    monkeypatch.setattr(class_progress, "_uid", lambda user: os.getuid())
    s1 = Path(course.inbound_of("s1"))
    (s1 / ".fetched+a").write_text("")
    (s1 / "a+20260101T000000.000000Z").mkdir()
    (s1 / "b+20260101T000000.000000Z").write_text("a file is no hand-in")
    (s1 / ".fetched+c").symlink_to(s1 / ".fetched+a")          # a link is no record
    os.mkfifo(s1 / ".fetched+d")                               # nor a FIFO (never opened)
    (s1 / ".e+20260101T000000.000000Z").mkdir()                # nor a hidden folder
    assert student_entries(Path(course.inbound), "s1") == ({"a"}, {"a"})
    assert student_entries(Path(course.inbound), "nobody") == (set(), set())
    released, fetched, submitted = class_progress.read_exchange(course, ["s1", "s2"])
    assert released == ["a"] and fetched == {"s1": {"a"}, "s2": set()} and submitted == {"s1": {"a"}, "s2": set()}


def test_a_folder_not_owned_by_its_student_or_a_link_counts_nothing(course, monkeypatch):
    s1 = Path(course.inbound_of("s1"))
    (s1 / ".fetched+a").write_text("")
    monkeypatch.setattr(class_progress, "_uid", lambda user: os.getuid() + 1)
    assert student_entries(Path(course.inbound), "s1") == (set(), set())
    monkeypatch.setattr(class_progress, "_uid", lambda user: os.getuid())
    Path(course.inbound_of("s2")).rmdir()
    Path(course.inbound_of("s2")).symlink_to(s1)
    assert student_entries(Path(course.inbound), "s2") == (set(), set())


def test_the_reader_looks_at_a_bounded_number_of_entries(course, monkeypatch):
    monkeypatch.setattr(class_progress, "_uid", lambda user: os.getuid())
    monkeypatch.setattr(class_progress, "MAX_ENTRIES", 5)
    s1 = Path(course.inbound_of("s1"))
    for i in range(20):
        (s1 / f".fetched+x{i}").write_text("")
    fetched, _ = student_entries(Path(course.inbound), "s1")
    assert len(fetched) == 5


# ---- the gradebook ------------------------------------------------------------------------------

def test_the_gradebook_read_only_and_not_made_when_absent(tmp_path, monkeypatch):
    from nbgrader.api import Gradebook

    # nbgrader creates the gradebook through the `alembic` command of its environment.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    path = tmp_path / "gradebook.db"
    assert read_gradebook(path, "c") == ([], [])
    assert not path.exists()
    with Gradebook(f"sqlite:///{path}", "c") as gb:
        gb.add_assignment("a1")
        gb.add_notebook("nb", "a1")
        gb.add_grade_cell("q1", "nb", "a1", max_score=2, cell_type="code")
        gb.add_grade_cell("w1", "nb", "a1", max_score=2, cell_type="markdown")
        for student in ("s1", "s2"):
            gb.add_student(student)
            gb.add_submission("a1", student)
        for student, auto in (("s1", 2.0), ("s2", 0.0)):
            gb.find_grade("q1", "nb", "a1", student).auto_score = auto
        written = gb.find_grade("w1", "nb", "a1", "s1")
        written.manual_score = 1.0
        gb.db.commit()
    before = path.read_bytes()
    assignments, graded = read_gradebook(path, "c")
    assert assignments == [("a1", 4.0)]
    found = {g.student: g for g in graded}
    assert (found["s1"].score, found["s1"].max_score) == (3.0, 4.0)
    assert found["s2"].score == 0.0 and found["s2"].needs_manual_grade
    assert path.read_bytes() == before      # opened read-only: this page never writes the gradebook


# ---- the page: cache, policy, escaping ----------------------------------------------------------

def test_concurrent_askers_share_one_reading_and_it_is_kept_for_a_few_seconds():
    now = [0.0]
    reads = []

    async def read():
        reads.append(now[0])
        await asyncio.sleep(0.01)
        if len(reads) == 3:
            raise OSError("gradebook locked")
        return len(reads)

    async def scenario():
        cache = Cached(read, seconds=5, clock=lambda: now[0])
        assert await asyncio.gather(*(cache.get() for _ in range(10))) == [1] * 10
        now[0] = 4.0
        assert await cache.get() == 1
        now[0] = 5.5
        assert await cache.get() == 2
        now[0] = 11.0
        with pytest.raises(OSError):
            await cache.get()
        assert await cache.get() == 4      # a failure is not kept
    asyncio.run(scenario())
    assert reads == [0.0, 5.5, 11.0, 11.0]


def test_json_in_the_page_cannot_end_its_script_block():
    text = json_for_script({"name": "</script><script>alert(1)</script>&"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"name": "</script><script>alert(1)</script>&"}


def sample() -> dict:
    progress = summarize("c", "A <b>course</b>", ["s1"], ["</script><img src=x onerror=alert(1)>"], {}, {}, [], [])
    return {**progress.as_json(), "read_at": 0}


def test_the_page_runs_its_own_script_only():
    page = render_page(sample(), "/services/formgrader-c/", xsrf="2|abc\"def")
    assert '<body data-xsrf="2|abc&#34;def">' in page     # for JupyterHub's check of every fetch, escaped
    policy = page_policy(page)
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, flags=re.S)
    assert len(scripts) == 2   # the data block and the code: nothing of the data became markup
    assert "A &lt;b&gt;course&lt;/b&gt;" in page and "<img" not in page
    code = [body for attrs, body in scripts if "application/json" not in attrs]
    (hashed,) = re.findall(r"'sha256-[^']+'", policy)
    import base64
    import hashlib

    assert hashed == "'sha256-" + base64.b64encode(hashlib.sha256(code[0].encode()).digest()).decode() + "'"
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert '"/services/formgrader-c/progress.json"' in page


def test_the_formgraders_pages_link_the_class_progress():
    from jinja2 import Environment, FileSystemLoader
    from nbgrader.server_extensions.formgrader import handlers

    from aifactory.hub.class_progress import sidebar_with_link, with_progress_link

    env = Environment()
    env.loader = with_progress_link(FileSystemLoader([handlers.template_path]), env)
    page = env.get_template("manage_assignments.tpl").render(base_url="/services/formgrader-c", url_prefix="",
                                                             windows=False, course_id="c", exchange="", error="")
    sidebar = page.split('nav-stacked">')[1].split("</ul>")[0]
    assert [link.split('"')[0] for link in sidebar.split('href="')[1:]] == [
        "/services/formgrader-c/formgrader/manage_assignments", "/services/formgrader-c/formgrader/gradebook",
        "/services/formgrader-c/formgrader/manage_students", "/services/formgrader-c/progress"]
    assert "Manage Assignments" in page and "Class progress" in page
    assert sidebar_with_link("<p>another shape</p>") == "<p>another shape</p>"
