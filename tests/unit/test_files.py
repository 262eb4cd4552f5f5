"""The one atomic write: whole files or none, the mode asked for, a failed check keeps the old file."""

import os
import stat

import pytest

from aifactory.site.files import atomic_write


def test_replaces_the_file_with_the_mode_asked_for(tmp_path):
    target = tmp_path / "session.json"
    target.write_text("old")
    atomic_write(target, '{"port": 1}', 0o600)
    assert target.read_text() == '{"port": 1}'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["session.json"]


def test_a_failed_check_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "rule"
    target.write_text("good")
    seen = []

    def refuse(tmp):
        seen.append(tmp.read_text())
        raise RuntimeError("visudo: syntax error")

    with pytest.raises(RuntimeError, match="visudo"):
        atomic_write(target, "bad", 0o440, check=refuse)
    assert seen == ["bad"]
    assert target.read_text() == "good"
    assert os.listdir(tmp_path) == ["rule"]


def test_a_link_planted_at_the_old_temporary_name_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    for planted in ("config.py.tmp", "config.py.new", ".config.py.tmp"):
        (tmp_path / planted).symlink_to(victim)
    atomic_write(tmp_path / "config.py", "c.X = 1\n")
    assert victim.read_text() == "precious"
    assert (tmp_path / "config.py").read_text() == "c.X = 1\n"
    assert not (tmp_path / "config.py").is_symlink()


def test_bytes_are_written_as_they_are(tmp_path):
    atomic_write(tmp_path / "blob", b"\x00\xff")
    assert (tmp_path / "blob").read_bytes() == b"\x00\xff"
