"""The harness's checks can fail: each catches the fault it is there for."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.faults.harness import Outcome, Snapshot, assert_clean_failure, run_cli, write_images


def test_traceback_is_caught() -> None:
    bad = Outcome(1, "", "Traceback (most recent call last):\n  ...\nValueError: boom\n")
    with pytest.raises(AssertionError, match="traceback"):
        assert_clean_failure(bad, code=None)


def test_two_error_lines_are_caught() -> None:
    bad = Outcome(2, "", "panoplace index: error: one\npanoplace index: error: two\n")
    with pytest.raises(AssertionError, match="exactly one"):
        assert_clean_failure(bad)


def test_leaked_exception_text_is_caught() -> None:
    bad = Outcome(2, "", "OSError: [Errno 28] No space left on device\npanoplace index: error: x\n")
    with pytest.raises(AssertionError, match="exception text"):
        assert_clean_failure(bad)


def test_success_is_not_a_clean_failure() -> None:
    with pytest.raises(AssertionError, match="expected a failure"):
        assert_clean_failure(Outcome(0, "", ""))


def test_clean_failure_passes_and_returns_line() -> None:
    ok = Outcome(2, "", "usage: panoplace index [-h] [--on-error X]\n"
                        "panoplace index: error: argument --nprobe: must be >= 1\n")
    assert assert_clean_failure(ok, contains=["--nprobe"]).endswith("must be >= 1")


def test_run_cli_turns_an_escaping_exception_into_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import panoplace.cli as cli

    def boom(argv: object) -> int:
        raise RuntimeError("escaped")

    monkeypatch.setattr("tests.faults.harness.main", boom)
    outcome = run_cli(["index"])
    assert outcome.code == 1 and "Traceback" in outcome.err and "RuntimeError: escaped" in outcome.err
    assert cli.main is not boom


def test_argparse_exit_code_is_kept() -> None:
    outcome = run_cli(["index", "--no-such-option"])
    assert outcome.code == 2
    assert_clean_failure(outcome)


def test_snapshot_sees_changed_added_and_removed_files(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "in", 2)
    snap = Snapshot([folder])
    snap.assert_unchanged()
    (folder / "0000000.png").write_bytes(b"other")
    (folder / "new.txt").write_text("x")
    (folder / "0000001.png").unlink()
    assert snap.changes() == sorted(str(folder / n) for n in ("0000000.png", "0000001.png", "new.txt"))


def test_small_disk_fills(small_disk) -> None:
    disk = small_disk("64k")
    with pytest.raises(OSError) as info:
        (disk / "big").write_bytes(b"\0" * 200_000)
    assert info.value.errno == errno.ENOSPC


def test_readonly_dir_refuses_writes(readonly_dir: Path) -> None:
    with pytest.raises(OSError) as info:
        (readonly_dir / "x").write_text("x")
    assert info.value.errno == errno.EROFS
    assert os.path.isdir(readonly_dir)
