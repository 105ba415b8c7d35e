"""Store pairs in ``evaluate`` and ``localize``: pixel stores compared by mean absolute difference,
several pairs combined into one difference matrix, and the error lines when pairs disagree."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from panoplace.cli import main
from panoplace.data import Dataset, GroundTruth, ImageSet
from panoplace.errors import DescriptorMismatchError, InputError
from panoplace.steps import evaluate, localize
from panoplace.steps.stores import in_order, store_pairs
from panoplace.store import DescriptorSet, save_descriptors

PIX = {"panorama": {"projection": "plain"}, "pixels": {"width": 4, "height": 2, "patch": 2}}
PLACE = {"model": {"backbone": "x"}}
N = 8


def _data() -> Dataset:
    """Query i was taken at database frame i (8 frames, exact correspondence)."""
    db = ImageSet("db", ".", [f"db/{i}.png" for i in range(N)])
    q = ImageSet("q", ".", [f"q/{i}.png" for i in range(N)])
    return Dataset(db, q, GroundTruth.from_tolerance(N, N, tolerance=0))


def _sets(q: np.ndarray, db: np.ndarray, cfg: dict, order=None):
    order = np.arange(N) if order is None else np.asarray(order)
    return (DescriptorSet(q[order], [f"q/{i}.png" for i in order], cfg, ""),
            DescriptorSet(db, [f"db/{i}.png" for i in range(N)], cfg, ""))


@pytest.fixture
def scaled(rng):
    """Database frames 4..7 are frames 0..3 scaled by 3; queries are the database with a little noise.
    Cosine cannot tell frame i from frame i + 4; the mean absolute difference can."""
    base = rng.normal(size=(4, 8)).astype(np.float32)
    db = np.concatenate([base, 3 * base])
    q = db + rng.normal(scale=0.01, size=db.shape).astype(np.float32)
    return q, db


def test_pixel_stores_are_compared_by_mean_absolute_difference(scaled):
    q, db = scaled
    pix = evaluate(*_sets(q, db, PIX), _data())
    place = evaluate(*_sets(q, db, PLACE), _data())
    assert pix.recall[1] == 1.0
    assert place.recall[1] <= 0.75  # half the scaled pairs look alike under cosine


def test_combined_pairs_weights_and_order(scaled, rng):
    q, db = scaled
    good = _sets(q, db, PIX)  # right for every query
    noisy_db = rng.normal(size=db.shape).astype(np.float32)
    bad = _sets(noisy_db + rng.normal(scale=0.01, size=db.shape).astype(np.float32), noisy_db[::-1].copy(), PLACE)
    alone_bad = evaluate(*bad, _data()).recall[1]
    assert alone_bad <= 0.25
    perm = rng.permutation(N)
    bad_shuffled = _sets(bad[0].descriptors, bad[1].descriptors, PLACE, order=perm)
    for second in (bad, bad_shuffled):  # the second pair's store in another order is aligned
        only_good = evaluate([good[0], second[0]], [good[1], second[1]], _data(), weights=[1, 0])
        only_bad = evaluate([good[0], second[0]], [good[1], second[1]], _data(), weights=[0, 1])
        assert only_good.recall[1] == 1.0 and only_bad.recall[1] == alone_bad
    both = evaluate([good[0], bad[0]], [good[1], bad[1]], _data(), standardise_columns=True)
    found = localize(queries=[good[0], bad_shuffled[0]], database=[good[1], bad[1]], standardise_columns=True,
                     k=3)
    top = [r["database_id"] for r in found.rows if r["rank"] == 1]
    hits = np.mean([t == f"db/{i}.png" for i, t in enumerate(top)])
    assert hits == pytest.approx(both.recall[1])
    assert found.retrieval.db_indices.shape == (N, 3) and found.retrieval.headings is None


def test_pairs_that_disagree_are_refused(scaled):
    q, db = scaled
    qp, dp = _sets(q, db, PIX)
    ql, dl = _sets(q, db, PLACE)
    with pytest.raises(InputError, match="2 query store.s. but 1 database"):
        store_pairs([qp, ql], [dp])
    with pytest.raises(DescriptorMismatchError, match="store pair 2 .a descriptor set vs a descriptor set.: query "
                                                      "descriptors are place descriptors of a model but database"):
        store_pairs([qp, ql], [dp, dp])
    with pytest.raises(DescriptorMismatchError, match="lacks 1 image"):
        in_order(qp.subset([0, 1, 2]), ["q/0.png", "q/1.png", "q/9.png"], "query #2")
    with pytest.raises(DescriptorMismatchError, match="has 3 descriptors"):
        in_order(qp.subset([0, 1, 2]), qp.ids, "query #2")
    with pytest.raises(DescriptorMismatchError, match="query #2 store has 7 descriptors"):
        localize(queries=[qp, ql.subset(range(1, N))], database=[dp, dl])
    with pytest.raises(InputError, match="one weight per pair"):
        evaluate([qp, ql], [dp, dl], _data(), weights=[1.0])
    with pytest.raises(InputError, match="there is one"):
        evaluate(qp, dp, _data(), weights=[1.0])
    with pytest.raises(InputError, match="offline matching only"):
        evaluate([qp, ql], [dp, dl], _data(), matcher="hmm", mode="online", standardise_columns=True)
    with pytest.raises(InputError, match="not both"):
        localize("x.index", qp, database=dp)
    with pytest.raises(InputError, match="for localising against an index"):
        localize(queries=qp, database=dp, nprobe=4)


def _fails(argv, capsys, verb) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"panoplace {verb}: error: "), err
    return err[0]


def test_cli_combines_stores_and_says_what_is_wrong(scaled, tmp_path, capsys):
    q, db = scaled
    paths = {}
    for name, cfg in (("pix", PIX), ("place", PLACE)):
        qs, ds = _sets(q, db, cfg)
        paths[name] = (save_descriptors(qs, tmp_path / f"q_{name}.h5"), save_descriptors(ds, tmp_path / f"d_{name}.h5"))
    lines = ["image,x,y"]
    (tmp_path / "db.csv").write_text("\n".join(lines + [f"db/{i}.png,{10 * i},0" for i in range(N)]) + "\n")
    (tmp_path / "q.csv").write_text("\n".join(lines + [f"q/{i}.png,{10 * i},1" for i in range(N)]) + "\n")
    spec = f"{tmp_path / 'db.csv'},{tmp_path / 'q.csv'}"
    (qp, dp), (ql, dl) = paths["pix"], paths["place"]
    assert main(["evaluate", str(qp), str(dp), "--combine", str(ql), str(dl), "--weights", "1", "0.5",
                 "--dataset", spec, "--radius", "5", "--json", str(tmp_path / "m.json")]) == 0
    assert main(["localize", "--database", str(dp), str(qp), "--combine", str(ql), str(dl), "--weights", "1", "0.5",
                 "--database-set", str(tmp_path / "db.csv"), "--out", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 5 * N and rows[0]["x"] != "" and float(rows[0]["score"]) <= 0
    capsys.readouterr()
    assert "compare stores of one kind" in _fails(["evaluate", qp, dl, "--dataset", spec], capsys, "evaluate")
    assert "store pair 2" in _fails(["evaluate", qp, dp, "--combine", ql, dp, "--dataset", spec], capsys, "evaluate")
    (tmp_path / "x.index").write_bytes(b"x")  # (the option checks that it exists)
    assert "need --database stores" in _fails(["localize", "--index", tmp_path / "x.index", qp, "--combine", ql, dl], capsys,
                                              "localize")
    assert "offline matching only" in _fails(["localize", "--database", dp, qp, "--combine", ql, dl,
                                              "--standardise-columns", "--sequence", "hmm", "--mode", "online"],
                                             capsys, "localize")
    assert "query images with database stores" in _fails(["localize", "--database", dl, tmp_path], capsys,
                                                         "localize")
