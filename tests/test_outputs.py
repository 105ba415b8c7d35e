"""panoplace.outputs: the output checks, the lock and write errors as one line."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from panoplace.atomic import atomic_path, write_errno, write_text_atomic
from panoplace.errors import OutputError
from panoplace.outputs import Output, OutputLock, check_outputs, claim, lock_path


def test_output_equal_to_an_input_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "a.h5"
    src.write_text("x")
    with pytest.raises(OutputError, match="also an input"):
        check_outputs([Output(tmp_path / "." / "a.h5")], [src])
    link = tmp_path / "b.h5"
    link.symlink_to(src)
    with pytest.raises(OutputError, match="also an input"):
        check_outputs([Output(link)], [src])
    check_outputs([Output(tmp_path / "c.h5")], [src])  # another path: fine


def test_output_folder_holding_an_input_is_refused(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.csv").write_text("x")
    with pytest.raises(OutputError, match="holds the input"):
        check_outputs([Output(tmp_path, folder=True)], [tmp_path / "in" / "x.csv"])
    check_outputs([Output(tmp_path / "out", folder=True)], [tmp_path / "in" / "x.csv"])


def test_two_outputs_on_one_path_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="same path"):
        check_outputs([Output(tmp_path / "a", option="--csv"), Output(tmp_path / "a", option="--json")])


def test_kind_and_writability(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a folder; give a file path"):
        check_outputs([Output(tmp_path / "dir")])
    with pytest.raises(OutputError, match="is a file; give a folder"):
        check_outputs([Output(tmp_path / "file", folder=True)])
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_outputs([Output(tmp_path / "file" / "deeper" / "x.h5")])
    check_outputs([Output(tmp_path / "new" / "deeper" / "x.h5")])  # missing folders are made later
    assert not (tmp_path / "new").exists()


def test_earlier_results_need_overwrite_unless_updated_or_resumed(tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    out.write_text("earlier")
    with pytest.raises(OutputError, match="exists .*--overwrite"):
        with claim([Output(out)]):
            pass
    for existing in ("update", "resume"):
        with claim([Output(out, existing=existing)]):
            pass
    with claim([Output(out)], overwrite=True):
        assert lock_path(out).exists()
    assert not lock_path(out).exists() and out.read_text() == "earlier"
    folder = tmp_path / "map"
    folder.mkdir()
    (folder / "descriptors.h5.part").write_text("partial")
    with claim([Output(folder, folder=True, marker="map.json")]):  # partial: resumed
        pass
    (folder / "map.json").write_text("{}")
    with pytest.raises(OutputError, match="holds an earlier result"):
        with claim([Output(folder, folder=True, marker="map.json")]):
            pass


def test_a_second_writer_is_refused_and_a_dead_ones_lock_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(lock_path(out))!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.write(fd, b'{\"pid\": %d, \"host\": \"h\", \"command\": \"panoplace extract x\"}' % os.getpid())\n"
         "print('locked', flush=True)\n"
         "time.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=f"another run \\(pid {holder.pid} on h: panoplace extract x\\)"):
            OutputLock(out).acquire()
    finally:
        holder.kill()
        holder.wait()
    assert lock_path(out).exists()  # left by the killed holder
    with OutputLock(out) as lock:  # taken over
        info = json.loads(lock.path.read_text())
        assert info["pid"] == os.getpid()
    assert not lock_path(out).exists()


def test_claims_nest_in_one_process(tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    with claim([Output(out)]):
        with claim([Output(out)], overwrite=True):  # the step inside the CLI verb
            assert lock_path(out).exists()
        assert lock_path(out).exists()
    assert not lock_path(out).exists()


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    (tmp_path / ".x.h5.abc123.tmp").write_text("half")
    (tmp_path / ".other.h5.abc123.tmp").write_text("not ours")
    with claim([Output(out)]):
        pass
    assert not (tmp_path / ".x.h5.abc123.tmp").exists() and (tmp_path / ".other.h5.abc123.tmp").exists()


def test_write_errors_are_recognised_in_library_messages() -> None:
    assert write_errno(OSError(errno.ENOSPC, "No space left on device")) == errno.ENOSPC
    hdf5 = OSError("Can't write data (file write failed: errno = 28, error message = 'No space left on device')")
    assert write_errno(hdf5) == errno.ENOSPC
    assert write_errno(RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing "
                                    "file data/0: file write failed")) == errno.ENOSPC
    assert write_errno(RuntimeError("unrelated bug")) is None
    assert write_errno(ValueError("No space left on device")) is None


def test_atomic_write_under_a_file_is_one_output_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="cannot write .*f/x.txt: a part of the path is a file"):
        write_text_atomic(tmp_path / "f" / "x.txt", "y")
    with pytest.raises(ZeroDivisionError):  # other errors pass through unchanged
        with atomic_path(tmp_path / "y.txt"):
            1 / 0
    assert not list(tmp_path.glob(".y.txt*"))
