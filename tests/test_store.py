"""Descriptor store: round trip, atomic writes, compatibility checks, partial stores."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.errors import DescriptorMismatchError, InputError
from panoplace.store import DescriptorSet, PartialStore, check_compatible, load_descriptors, save_descriptors

CFG = {"model": {"backbone": "x", "num_clusters": 4}, "panorama": {"projection": "plain"}}


def _set(rng, n=5, d=8, fp="abc", cfg=CFG):
    return DescriptorSet(rng.standard_normal((n, d)).astype(np.float32), [f"img{i}.jpg" for i in range(n)], cfg, fp)


def test_round_trip_keeps_everything(tmp_path, rng):
    ds = _set(rng)
    path = save_descriptors(ds, tmp_path / "sub" / "d.h5")
    back = load_descriptors(path)
    np.testing.assert_array_equal(back.descriptors, ds.descriptors)
    assert back.ids == ds.ids and back.config == CFG and back.fingerprint == "abc"
    assert [p.name for p in path.parent.iterdir()] == ["d.h5"]  # no temp file left behind


def test_per_crop_round_trip_and_fused_view(tmp_path, rng):
    ds = DescriptorSet(rng.standard_normal((3, 4, 6)), ["a", "b", "c"], CFG, "f")
    back = load_descriptors(save_descriptors(ds, tmp_path / "p.h5"))
    assert back.per_crop and back.dim == 6
    fused = back.fused()
    expect = ds.descriptors.sum(1) / np.linalg.norm(ds.descriptors.sum(1), axis=1, keepdims=True)
    np.testing.assert_allclose(fused, expect, rtol=1e-5)


def test_load_errors_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_descriptors(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="cannot read"):
        load_descriptors(bad)


def test_ids_must_match_rows(rng):
    with pytest.raises(InputError, match="2 ids for 3"):
        DescriptorSet(np.zeros((3, 2)), ["a", "b"])


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(d=9), "dimension 9"),
        (dict(fp="other"), "different model weights"),
        (dict(cfg={"model": {"backbone": "y", "num_clusters": 4}}), r"differ in \['backbone'\]"),
        (dict(n=0), "empty"),
    ],
)
def test_check_compatible_refuses(rng, change, message):
    db = _set(rng)
    with pytest.raises(DescriptorMismatchError, match=message):
        check_compatible(_set(rng, **change), db)


def test_check_compatible_refuses_nan(rng):
    q = _set(rng)
    q.descriptors[2, 3] = np.nan
    with pytest.raises(DescriptorMismatchError, match="NaN.*img2.jpg"):
        check_compatible(q, _set(rng))
    check_compatible(_set(rng), _set(rng))  # same model, finite values: accepted


def test_partial_store_resumes_and_discards_other_runs(tmp_path, rng):
    path = tmp_path / "x.h5.part"
    a = rng.standard_normal((2, 4)).astype(np.float32)
    s = PartialStore(path, CFG, "fp", "ids1", (4,))
    assert s.open() == 0
    s.append(a, ["a", "b"], [True, False])
    s.close()
    again = PartialStore(path, CFG, "fp", "ids1", (4,))
    assert again.open() == 2
    d, ids, ok = again.read()
    np.testing.assert_array_equal(d, a)
    assert ids == ["a", "b"] and ok.tolist() == [True, False]
    again.close()
    other = PartialStore(path, CFG, "fp", "ids2", (4,))  # another image list: start anew
    assert other.open() == 0
    other.remove()
    assert not path.exists()


def test_partial_store_recomputes_changed_images_and_refuses_other_options(tmp_path, rng):
    from panoplace.errors import OutputError

    path = tmp_path / "x.h5.part"
    a = rng.standard_normal((3, 4)).astype(np.float32)
    stamps = np.array([[10, 1], [11, 2], [12, 3]], np.int64)
    ids = ["a", "b", "c"]
    s = PartialStore(path, CFG, "fp", "ids1", (4,), stamps=stamps, expected_ids=ids)
    assert s.open() == 0
    s.append(a, ids, [True] * 3)
    s.close()
    same = PartialStore(path, CFG, "fp", "ids1", (4,), stamps=stamps, expected_ids=ids)
    assert same.open() == 3
    same.close()
    changed = stamps.copy()
    changed[1] = [11, 99]  # "b" was rewritten after its row was stored
    resumed = PartialStore(path, CFG, "fp", "ids1", (4,), stamps=changed, expected_ids=ids)
    assert resumed.open() == 1  # "a" kept; "b" and the rows after it are computed again
    d, kept, _ = resumed.read()
    np.testing.assert_array_equal(d, a[:1])
    assert kept == ["a"]
    resumed.close()
    other_cfg = {**CFG, "panorama": {"n_crops": 99}}
    refused = PartialStore(path, other_cfg, "fp", "ids1", (4,), stamps=stamps, expected_ids=ids, on_other="refuse")
    before = path.read_bytes()
    with pytest.raises(OutputError, match="other options.*--overwrite"):
        refused.open()
    assert path.read_bytes() == before
    new_weights = PartialStore(path, CFG, "other-weights", "ids1", (4,), stamps=stamps, expected_ids=ids,
                               on_other="refuse")  # the checkpoint changed: an input, so start anew
    assert new_weights.open() == 0
    new_weights.close()
    restarted = PartialStore(path, other_cfg, "fp", "ids1", (4,), stamps=stamps, expected_ids=ids)
    assert restarted.open() == 0
    restarted.remove()


def test_an_unreadable_partial_store_is_ignored(tmp_path):
    path = tmp_path / "x.h5.part"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # what a disk that filled up may leave
    s = PartialStore(path, CFG, "fp", "ids1", (4,), stamps=np.zeros((2, 2), np.int64), expected_ids=["a", "b"])
    assert s.open() == 0
    s.append(np.ones((2, 4), np.float32), ["a", "b"], [True, True])
    assert s.read()[1] == ["a", "b"]
    s.remove()


PIX = {"panorama": {"projection": "plain"}, "pixels": {"width": 4, "height": 2, "patch": 2}}


def test_store_says_what_it_holds_and_refuses_to_mix_kinds(tmp_path, rng):
    pix = load_descriptors(save_descriptors(_set(rng, d=8, fp="", cfg=PIX), tmp_path / "p.h5"))
    place = _set(rng, d=8)
    assert (pix.kind, pix.metric) == ("pixels", "sad")
    assert (place.kind, place.metric) == ("place", "cosine")
    with pytest.raises(DescriptorMismatchError, match="pixels .4x2, patch 2. but database descriptors are place"):
        check_compatible(pix, place)
    with pytest.raises(DescriptorMismatchError, match="place descriptors of a model but database descriptors are pix"):
        check_compatible(place, pix)
    other = {**PIX, "pixels": {"width": 2, "height": 4, "patch": 2}}
    with pytest.raises(DescriptorMismatchError, match="pixels made differently"):
        check_compatible(pix, _set(rng, d=8, fp="", cfg=other))
    check_compatible(pix, _set(rng, d=8, fp="", cfg=PIX))
