"""OnlineLocaliser: follows a drive, relocalises after a jump, works on several traversals with
a branch, calibrated confidence, per-crop headings."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.errors import InputError
from panoplace.index import build_index
from panoplace.matching.graph import MapGraph
from panoplace.matching.online import Estimate, OnlineLocaliser, OnlineParams
from panoplace.matching.sequence import HMMParams, SeqSLAMParams
from panoplace.store import DescriptorSet
from tests.matching.conftest import observe, route_descriptors


def _index(db: np.ndarray, kind: str = "flat"):
    ds = DescriptorSet(db, [str(i) for i in range(len(db))], {}, "")
    if kind == "flat":
        return build_index(ds)
    return build_index(ds, kind="ivfpq", nlist=16, m=8, nbits=6, nprobe=8)


@pytest.mark.parametrize("matcher", [HMMParams(ds=10, mode="online"), SeqSLAMParams(ds=10, mode="online")])
@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_follows_a_drive_far_better_than_single_frames(route_map, matcher, kind):
    db, queries, truth = route_map
    index = _index(db, kind)
    loc = OnlineLocaliser(index, params=OnlineParams(matcher=matcher, k=10))
    est = [loc.update(q) for q in queries]
    frames = np.array([e.frame for e in est])
    single = index.search(queries, 1)[1][:, 0]
    ok = np.abs(frames - truth) <= 2
    assert np.abs(single - truth).__le__(2).mean() < 0.6
    assert ok[20:].mean() >= (0.93 if kind == "flat" else 0.85)
    assert all(isinstance(e, Estimate) and 0.0 <= e.confidence <= 1.0 for e in est)
    assert est[50].candidates.shape == est[50].scores.shape and est[50].candidates[0] == est[50].frame
    assert (np.diff(est[50].scores) <= 0).all()


def test_relocalises_after_a_kidnap(rng):
    db = route_descriptors(rng, 800)
    truth = np.r_[np.arange(100, 200), np.arange(600, 700)]  # jump of 400 frames at query 100
    queries = observe(rng, db[truth], 1.2)
    loc = OnlineLocaliser(_index(db), params=OnlineParams(matcher=HMMParams(ds=10, mode="online")))
    est = [loc.update(q) for q in queries]
    frames = np.array([e.frame for e in est])
    assert (np.abs(frames[110:200] - truth[110:200]) <= 2).mean() >= 0.95  # back on track within ds
    reloc = [i for i, e in enumerate(est) if e.relocalised]
    assert not [i for i in reloc if 30 <= i < 100]  # steady tracking raises no flag
    jump = [i for i in reloc if 100 <= i <= 110]
    assert jump and not [i for i in reloc if i > 120]
    # just after the jump the window is short: those estimates rank below full-window ones
    full = [est[i].confidence for i in range(30, 100)]
    after = [est[i].confidence for i in range(jump[-1], jump[-1] + 5)]
    assert max(after) < min(full)


def test_several_traversals_and_a_branch(rng):
    # street A (frames 0-299) then, at a junction, branch B or C; traversal 1 drove A then B,
    # traversal 2 drove A then C; the query drives A then C
    a, b, c = route_descriptors(rng, 300), route_descriptors(rng, 200), route_descriptors(rng, 200)
    t1 = np.concatenate([observe(rng, a, 0.3), observe(rng, b, 0.3)])
    t2 = np.concatenate([observe(rng, a, 0.3), observe(rng, c, 0.3)])
    db = np.concatenate([t1, t2])
    seq = np.repeat([1, 2], 500)
    s = np.arange(500.0)
    xy1 = np.c_[np.minimum(s, 300), np.maximum(s - 300, 0)]       # B turns north
    xy2 = np.c_[s, np.zeros(500)]                                  # C goes straight on
    graph = MapGraph.from_sequences(seq, xy=np.concatenate([xy1, xy2]))
    assert graph.n_chains == 2 and graph.n_links > 0
    truth_place = np.arange(200, 450)
    queries = observe(rng, np.concatenate([a, c])[truth_place], 1.3)
    loc = OnlineLocaliser(_index(db), graph, OnlineParams(matcher=HMMParams(ds=10, mode="online"), k=10))
    frames = np.array([loc.update(q).frame for q in queries])
    on_a = frames[:100] % 500
    assert (np.abs(on_a - truth_place[:100]) <= 2)[15:].mean() >= 0.9   # either traversal on A
    after = frames[115:]
    assert ((after >= 500) & (np.abs(after - 500 - truth_place[115:]) <= 2)).mean() >= 0.9  # C, not B


def test_reset_forgets_the_drive(route_map):
    db, queries, truth = route_map
    loc = OnlineLocaliser(_index(db))
    for q in queries[:30]:
        loc.update(q)
    loc.reset()
    first = loc.update(queries[100])
    assert len(loc.rows) == 1 and not first.relocalised


def test_heading_from_per_crop_descriptors(rng):
    n, k, d = 120, 8, 16
    crops = rng.normal(size=(n, k, d)).astype(np.float32)
    crops /= np.linalg.norm(crops, axis=2, keepdims=True)
    index = build_index(DescriptorSet(crops, [str(i) for i in range(n)], {}, ""))
    loc = OnlineLocaliser(index)
    est = None
    for j in range(40, 52):
        est = loc.update(np.roll(crops[j], -2, axis=0))  # turned by 2 crops = 90 degrees
    assert est is not None and est.frame == 51
    assert est.heading_deg == pytest.approx(90.0, abs=1.0) or est.heading_deg == pytest.approx(-270.0, abs=1.0)


def test_bad_inputs_raise_one_line_errors(route_map):
    db, _, _ = route_map
    index = _index(db)
    with pytest.raises(InputError, match="mode='online'"):
        OnlineParams(matcher=HMMParams(mode="offline"))
    with pytest.raises(InputError, match="map graph"):
        OnlineLocaliser(index, MapGraph.chain(5))
    loc = OnlineLocaliser(index)
    with pytest.raises(InputError, match="dimension"):
        loc.update(np.ones(5, np.float32))
    with pytest.raises(InputError, match="shape"):
        loc.update(np.ones((2, 2, 2), np.float32))
