"""The atomic-write helpers every writer in panoplace goes through."""

from __future__ import annotations

import stat

import pytest

from panoplace.atomic import atomic_path, write_bytes_atomic, write_text_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path) -> None:
    target = write_text_atomic(tmp_path / "sub" / "a.csv", "old\n")  # the folder is created
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert [p.name for p in target.parent.iterdir()] == ["a.csv"]


def test_a_clean_write_replaces_the_file_readable_by_all(tmp_path) -> None:
    target = tmp_path / "a.bin"
    write_bytes_atomic(target, b"one")
    with atomic_path(target, suffix=".png") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".a.bin.") and tmp.name.endswith(".tmp.png")
        tmp.write_bytes(b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    write_text_atomic(target, "a\r\nb\n")
    assert target.read_bytes() == b"a\r\nb\n"  # newlines as given
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
