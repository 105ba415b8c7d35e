"""Map folders: built from a dataset CSV, opened by the service."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from panoplace.cli import main
from panoplace.data.frames import load_csv
from panoplace.errors import InputError
from panoplace.mapfolder import MANIFEST, build_map, load_map, thumbnail_name
from panoplace.store import load_descriptors


def test_map_folder_holds_frames_in_index_order(tiny_map: Path, tiny_world: Path) -> None:
    m = load_map(tiny_map)
    source = load_csv(tiny_world / "day" / "frames.csv")
    assert len(m) == len(source) == 12
    rows = source.rows_for(m.index.ids)
    np.testing.assert_allclose(m.frames.xy, source.xy[rows])
    np.testing.assert_allclose(m.frames.latlon, source.latlon[rows])
    np.testing.assert_allclose(m.frames.heading, source.heading[rows])
    assert m.frames.paths[3] == thumbnail_name(3)
    assert m.thumbnail_path(3).read_bytes()[:3] == b"\xff\xd8\xff"
    store = load_descriptors(tiny_map / "descriptors.h5")
    assert store.descriptors.shape == (12, 4, 640)  # per-crop: 4 crops x NetVLAD 8 x 80
    assert m.index.n_crops == 4
    assert m.panorama.projection == "equirect" and m.panorama.n_crops == 4
    assert m.manifest["name"] == "map" and m.manifest["frames"] == 12
    with pytest.raises(InputError, match="not in the map"):
        m.thumbnail_path(12)


def test_map_folder_refuses_to_overwrite_and_unfinished_folders(tiny_map: Path, tiny_world: Path,
                                                                tmp_path: Path) -> None:
    with pytest.raises(InputError, match="already holds a map"):
        build_map(tiny_world / "day" / "frames.csv", tiny_map, checkpoint=tiny_map / "model.pt")
    with pytest.raises(InputError, match="folder of the input CSV"):
        build_map(tiny_world / "day" / "frames.csv", tiny_world / "day", checkpoint=tiny_map / "model.pt")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_map, unfinished)
    (unfinished / MANIFEST).unlink()
    with pytest.raises(InputError, match="not a finished map folder"):
        load_map(unfinished)
    manifest = json.loads((tiny_map / MANIFEST).read_text())
    (unfinished / MANIFEST).write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(InputError, match="format version 99"):
        load_map(unfinished)


def test_map_build_cli_errors_are_one_line(tmp_path: Path, tiny_world: Path, capsys: pytest.CaptureFixture) -> None:
    no_positions = tmp_path / "nopos.csv"
    no_positions.write_text("image\n" + (tiny_world / "day" / "equirect" / "000000.jpg").as_posix() + "\n")
    assert main(["map", "build", str(no_positions), "--aggregator", "gem", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("panoplace map: error:") and "positions" in err[-1]
