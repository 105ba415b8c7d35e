"""The safe torch-file reader: plain data loads, nothing in a file runs."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from panoplace.errors import CheckpointError
from panoplace.models.torchfile import read_torch_file, state_dict_of


@pytest.mark.parametrize("layout", ["zip", "legacy", "raw pickle"])
def test_a_planted_payload_never_runs(hostile, layout: str) -> None:
    path = hostile.folder / f"model_{layout.replace(' ', '_')}.pth"
    if layout == "raw pickle":
        hostile.raw_pickle(path)
    else:
        hostile.torch_file(path, legacy=layout == "legacy")
    if layout == "raw pickle":
        hostile.live(lambda: pickle.loads(path.read_bytes()))
    else:
        hostile.live(lambda: torch.load(path, weights_only=False))
    with pytest.raises(CheckpointError) as err:
        read_torch_file(path, "checkpoint")
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "could run code" in msg and "exec" in msg
    assert not hostile.marker.exists()


def test_published_plain_data_loads_in_both_serialisations(tmp_path: Path) -> None:
    """Old ``.pth.tar`` files (legacy serialisation, numpy scalars and arrays beside the weights,
    as pytorch-NetVlad writes) load without full unpickling."""
    sd = {"module.conv.weight": torch.randn(2, 3, 1, 1)}
    obj = {"epoch": 4, "state_dict": sd, "best_score": np.float64(0.7), "recalls": {1: np.float32(0.5)},
           "counts": np.arange(3), "arch": "resnet18", "parallel": False}
    for legacy in (False, True):
        path = tmp_path / f"ckpt_{legacy}.pth.tar"
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        got = read_torch_file(path)
        assert got["best_score"] == 0.7 and isinstance(got["best_score"], np.float64)
        assert np.array_equal(got["counts"], np.arange(3)) and got["arch"] == "resnet18"
        assert torch.equal(state_dict_of(got, str(path))["conv.weight"], sd["module.conv.weight"])


def test_unreadable_files_are_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read checkpoint file .*junk.pth") as err:
        read_torch_file(junk)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_torch_file(tmp_path / "missing.pth")
