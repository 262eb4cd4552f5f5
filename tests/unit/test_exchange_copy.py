"""The exchange's one safe copy (`copy_tree`), its bounded reader (`read_small`) and collect,
on a tmp dir with links, FIFOs, devices and sockets, in-process (root is fine: root follows
every link, which is what the copy must not do)."""

from __future__ import annotations

import dataclasses
import os
import socket
import stat
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from aifactory.courses.exchange import transfer
from aifactory.courses.exchange.layout import CoursePaths
from aifactory.courses.exchange.transfer import Refused, TooLarge, copy_tree, open_dir, read_small

SECRET = b"SECRET-GRADEBOOK-CONTENT"


def _copy(src: Path, dest: Path, **kw) -> transfer.Copied:
    dest.mkdir()
    s, d = open_dir(src), open_dir(dest)
    try:
        return copy_tree(s, d, file_mode=kw.pop("file_mode", 0o640), dir_mode=kw.pop("dir_mode", 0o750), **kw)
    finally:
        os.close(s)
        os.close(d)


def _tree(root: Path) -> dict[str, bytes | None]:
    """Relative path -> content (None for folders); fails on anything else."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        assert stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode), f"{path} is neither file nor folder"
        out[str(path.relative_to(root))] = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
    return out


@pytest.fixture
def secret(tmp_path) -> Path:
    folder = tmp_path / "trainer-only"
    folder.mkdir()
    (folder / "gradebook.db").write_bytes(SECRET)
    return folder


def test_copies_regular_files_and_folders_only(tmp_path, secret):
    src = tmp_path / "sub"
    (src / "nested").mkdir(parents=True)
    (src / "a.ipynb").write_text("{}")
    (src / "nested" / "b.txt").write_text("b")
    (src / "link").symlink_to(secret / "gradebook.db")
    (src / "dirlink").symlink_to(secret)
    (src / "nested" / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(src / "fifo")
    os.mknod(src / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))   # a /dev/zero of its own
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    (src / ".ipynb_checkpoints").mkdir()
    (src / ".ipynb_checkpoints" / "x").write_text("x")
    try:
        started = time.monotonic()
        copied = _copy(src, tmp_path / "dest", file_mode=0o604, dir_mode=0o2750)
    finally:
        sock.close()
    assert time.monotonic() - started < 5
    assert _tree(tmp_path / "dest") == {"a.ipynb": b"{}", "nested": None, "nested/b.txt": b"b"}
    assert stat.S_IMODE((tmp_path / "dest" / "a.ipynb").stat().st_mode) == 0o604
    assert stat.S_IMODE((tmp_path / "dest" / "nested").stat().st_mode) == 0o2750
    assert sorted(copied.skipped) == ["dirlink: a symbolic link", "fifo: a FIFO", "link: a symbolic link",
                                      "nested/dangling: a symbolic link", "sock: a socket", "zero: a device"]
    assert copied.bytes == 3 and copied.entries == 7 + 2  # skipped ones counted too, checkpoints not
    assert copied.newest_ctime >= (src / "nested" / "b.txt").stat().st_ctime


def test_a_link_at_the_top_is_not_opened():
    with pytest.raises(OSError):
        open_dir("/proc/self/cwd")   # a link to a folder: O_NOFOLLOW refuses it


def test_size_limit_counts_bytes_and_leaves_no_hang(tmp_path):
    src = tmp_path / "sub"
    src.mkdir()
    with open(src / "sparse.bin", "wb") as f:
        f.truncate(10 * 2**30)   # 10 GiB, no blocks: refused from fstat before a byte is read
    started = time.monotonic()
    with pytest.raises(TooLarge):
        _copy(src, tmp_path / "d1", limit=2**20)
    assert time.monotonic() - started < 2
    # Many files each under the limit: the running count stops the copy.
    (src / "sparse.bin").unlink()
    for k in range(5):
        (src / f"{k}.bin").write_bytes(b"x" * 300_000)
    with pytest.raises(TooLarge):
        _copy(src, tmp_path / "d2", limit=2**20)
    assert _copy(src, tmp_path / "d3", limit=2 * 2**20).bytes == 1_500_000


def test_a_file_that_grows_while_read_is_cut_at_the_limit(tmp_path, monkeypatch):
    """fstat says small; reading counts what really comes (here: a file extended after the fstat)."""
    src = tmp_path / "sub"
    src.mkdir()
    (src / "grows.bin").write_bytes(b"x" * 10)
    real_fstat = os.fstat

    def fstat_then_grow(fd):
        st = real_fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_size == 10:
            with open(src / "grows.bin", "ab") as f:
                f.write(b"y" * 3 * 2**20)
        return st

    monkeypatch.setattr(transfer.os, "fstat", fstat_then_grow)
    with pytest.raises(TooLarge):
        _copy(src, tmp_path / "dest", limit=2**20)


def test_depth_and_entry_limits(tmp_path, monkeypatch):
    src = tmp_path / "sub"
    deep = src
    for _ in range(8):
        deep = deep / "d"
    deep.mkdir(parents=True)
    monkeypatch.setattr(transfer, "MAX_DEPTH", 4)
    with pytest.raises(TooLarge, match="deeper"):
        _copy(src, tmp_path / "d1")
    monkeypatch.setattr(transfer, "MAX_DEPTH", 64)
    monkeypatch.setattr(transfer, "MAX_ENTRIES", 5)
    with pytest.raises(TooLarge, match="more than 5"):
        _copy(src, tmp_path / "d2")


def test_read_small_takes_a_small_regular_file_only(tmp_path):
    (tmp_path / "ok.txt").write_text("2026-01-01 00:00:00.000000 UTC\n")
    (tmp_path / "big.txt").write_text("x" * 1000)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "dir").mkdir()
    fd = open_dir(tmp_path)
    try:
        assert read_small(fd, "ok.txt").startswith(b"2026")
        started = time.monotonic()
        for name, why in (("big.txt", "larger"), ("fifo", "FIFO"), ("zero", "link"), ("dir", "folder")):
            with pytest.raises(Refused, match=why):
                read_small(fd, name)
        assert time.monotonic() - started < 2   # the FIFO has no writer: a blocking open would hang
        with pytest.raises(FileNotFoundError):
            read_small(fd, "missing")
    finally:
        os.close(fd)


def test_swapping_files_for_links_during_copies_never_copies_the_target(tmp_path, secret):
    """Like the integration attack, in-process: a thread swaps names for links while copies run."""
    src = tmp_path / "sub"
    src.mkdir()
    names = [f"n{k}.ipynb" for k in range(4)]
    for name in names:
        (src / name).write_text("{}")
    stop = time.monotonic() + 2.0

    def swap():
        k = 0
        while time.monotonic() < stop:
            name = names[k % len(names)]
            tmp = src / f".tmp{k}"
            tmp.symlink_to(secret / "gradebook.db")
            os.rename(tmp, src / name)
            tmp.write_text("{}")
            os.rename(tmp, src / name)
            k += 1

    swapper = threading.Thread(target=swap)
    swapper.start()
    rounds = skipped = 0
    try:
        while time.monotonic() < stop and rounds < 300:
            dest = tmp_path / f"copy{rounds}"
            skipped += len(_copy(src, dest).skipped)
            for path in dest.rglob("*"):
                assert SECRET not in path.read_bytes()
            rounds += 1
    finally:
        swapper.join()
    assert rounds > 10


# ---- collect, release_feedback, fetch_feedback on tmp roots (in-process, as root) -------------

@pytest.fixture
def course(tmp_path) -> CoursePaths:
    paths = CoursePaths("c", courses_root=tmp_path / "courses", exchange_root=tmp_path / "exchange",
                        max_submission_bytes=100 * 2**20)
    for folder in (paths.course_dir, paths.outbound, paths.inbound, paths.feedback):
        Path(folder).mkdir(parents=True)
    (Path(paths.course_dir) / "gradebook.db").write_bytes(SECRET)
    for student in ("s1", "s2", "s3"):
        Path(paths.inbound_of(student)).mkdir()
        Path(paths.feedback_of(student)).mkdir()
    return paths


def hand_in(paths: CoursePaths, student: str, name: str, files: dict[str, bytes]) -> Path:
    folder = Path(paths.inbound_of(student)) / name
    folder.mkdir()
    for rel, content in files.items():
        (folder / rel).write_bytes(content)
    (folder / "timestamp.txt").write_text(transfer.format_timestamp(datetime.now(timezone.utc)))
    return folder


def test_collect_names_every_refusal_and_keeps_what_was_handed_in(course, monkeypatch):
    gradebook = Path(course.course_dir) / "gradebook.db"
    hand_in(course, "s1", "a+20260101T000000.000000Z", {"a.ipynb": b"s1", ".aifactory-source": b"forged"})
    # s2: a good hand-in, then one with links and a FIFO timestamp, then one over the limit.
    hand_in(course, "s2", "a+20260101T000000.000000Z", {"a.ipynb": b"s2-first"})
    time.sleep(0.02)
    linked = hand_in(course, "s2", "a+20260101T000001.000000Z", {"a.ipynb": b"s2-second"})
    (linked / "gradebook.ipynb").symlink_to(gradebook)
    (linked / "timestamp.txt").unlink()
    os.mkfifo(linked / "timestamp.txt")
    time.sleep(0.02)
    hand_in(course, "s2", "a+20260101T000002.000000Z", {"big.bin": b"x" * 5000})
    # s3: only a link where a hand-in folder should be.
    os.symlink(course.course_dir, Path(course.inbound_of("s3")) / "a+20260101T000000.000000Z")
    course = dataclasses.replace(course, max_submission_bytes=4096)

    started = time.monotonic()
    got = {c.submission.student: c for c in transfer.collect(course, "a")}
    assert time.monotonic() - started < 5
    assert sorted(got) == ["s1", "s2", "s3"]
    assert got["s1"].accepted and got["s1"].refused == "" and got["s1"].new
    marker = Path(course.course_dir) / "submitted" / "s1" / "a" / ".aifactory-source"
    assert marker.read_text() == "a+20260101T000000.000000Z"   # the collector's, not the student's
    s2 = got["s2"]
    assert s2.accepted and s2.submission.path.name == "a+20260101T000001.000000Z"
    assert "a+20260101T000001.000000Z: timestamp.txt: a FIFO" in s2.refused
    assert "a+20260101T000001.000000Z/gradebook.ipynb: a symbolic link, skipped" in s2.refused
    assert "a+20260101T000002.000000Z: larger than 4096 bytes, not collected" in s2.refused
    assert not got["s3"].accepted and "a symbolic link, not collected" in got["s3"].refused

    archive = Path(course.course_dir) / "archive"
    assert sorted(p.name for p in (archive / "s2" / "a").iterdir()) == [
        "a+20260101T000000.000000Z", "a+20260101T000001.000000Z"]   # no staging left, the big one refused
    assert not (archive / "s3" / "a").exists() or not any((archive / "s3" / "a").iterdir())
    submitted = Path(course.course_dir) / "submitted"
    assert _tree(submitted / "s2" / "a") == {".aifactory-source": b"a+20260101T000001.000000Z",
                                             "a.ipynb": b"s2-second",
                                             "timestamp.txt": (submitted / "s2" / "a" / "timestamp.txt").read_bytes()}
    for path in archive.rglob("*"):
        assert not path.is_symlink() and (path.is_dir() or SECRET not in path.read_bytes())
    # Nothing handed in is lost: the exchange is untouched; a second collect changes nothing.
    assert len(list(Path(course.inbound_of("s2")).iterdir())) == 3
    again = {c.submission.student: c for c in transfer.collect(course, "a")}
    assert not again["s2"].new and "larger than" in again["s2"].refused


def test_release_feedback_replaces_a_link_and_never_writes_through_it(course, tmp_path):
    src = Path(course.course_dir) / "feedback"
    for student in ("s1", "s2"):
        (src / student / "a").mkdir(parents=True)
        (src / student / "a" / "a.html").write_text(f"feedback of {student}")
    elsewhere = tmp_path / "trainer-writable"
    elsewhere.mkdir()
    # s1's released folder is a link to somewhere the trainer writes; s2's whole feedback folder is a link.
    (Path(course.feedback_of("s1")) / "a").symlink_to(elsewhere)
    Path(course.feedback_of("s2")).rmdir()
    Path(course.feedback_of("s2")).symlink_to(elsewhere)
    assert transfer.release_feedback(course, "a") == ["s1"]
    assert list(elsewhere.iterdir()) == []
    released = Path(course.feedback_of("s1")) / "a"
    assert not released.is_symlink() and (released / "a.html").read_text() == "feedback of s1"
    assert sorted(p.name for p in Path(course.feedback_of("s1")).iterdir()) == ["a"]


def test_fetch_feedback_replaces_a_link_at_the_destination(course, tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "me", lambda: "s1")
    released = Path(course.feedback_of("s1")) / "a"
    released.mkdir()
    (released / "a.html").write_text("mine")
    home = tmp_path / "home"
    (home / "a").mkdir(parents=True)
    other = tmp_path / "other-place"
    other.mkdir()
    (home / "a" / "feedback").symlink_to(other)
    assert transfer.fetch_feedback(course, "a", home) == home / "a" / "feedback"
    assert list(other.iterdir()) == []
    assert not (home / "a" / "feedback").is_symlink()
    assert (home / "a" / "feedback" / "a.html").read_text() == "mine"
    # A link in the exchange instead of my released folder: nothing is fetched through it.
    (released / "a.html").unlink()
    released.rmdir()
    released.symlink_to(other)
    (other / "x.html").write_text("not mine")
    assert transfer.fetch_feedback(course, "a", tmp_path / "home2") is None
