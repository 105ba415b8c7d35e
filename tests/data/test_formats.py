"""Dataset format loaders and the load_dataset dispatcher, on files the tests write."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from panoplace.data import GroundTruth, ImageSet, load_dataset, load_pair, parse_spec, write_csv
from panoplace.data import formats
from panoplace.errors import DatasetError


def brute_positives(db: np.ndarray, q: np.ndarray, radius: float) -> list:
    d = np.linalg.norm(q[:, None] - db[None], axis=2)
    return [np.flatnonzero(r <= radius).tolist() for r in d]


# --------------------------------------------------------------------- @UTM names
def utm_name(e: float, n: float, heading: str = "", lat: str = "", lon: str = "") -> str:
    return f"@{e:.2f}@{n:.2f}@17@T@{lat}@{lon}@pano{e:.0f}@@{heading}@@@@201810@@.jpg"


def test_parse_utm_name_fields() -> None:
    e, n, lat, lon, h = formats.parse_utm_name(utm_name(585001.5, 4477002.25, "87.5", "40.44", "-79.99"))
    assert (e, n, lat, lon, h) == (585001.5, 4477002.25, 40.44, -79.99, 87.5)
    e, n, lat, lon, h = formats.parse_utm_name("@10.5@20.0.jpg")  # short form
    assert (e, n) == (10.5, 20.0) and np.isnan(h)
    with pytest.raises(DatasetError, match="@utm_east@utm_north"):
        formats.parse_utm_name("frame_0001.jpg")


def test_utm_folder_and_gsv_layout(tmp_path: Path, make_images) -> None:
    rng = np.random.default_rng(0)
    db_xy = rng.uniform(0, 200, (20, 2)) + [585000, 4477000]
    q_xy = rng.uniform(0, 200, (8, 2)) + [585000, 4477000]
    make_images(tmp_path / "test" / "database", [utm_name(*p, heading=str(i * 10)) for i, p in enumerate(db_xy)])
    make_images(tmp_path / "test" / "queries", [utm_name(*p) for p in q_xy])
    one = load_dataset(tmp_path / "test" / "database")
    assert one.queries is None and len(one.database) == 20
    assert sorted(one.database.heading.tolist()) == [float(i * 10) for i in range(20)]
    ds = load_dataset(str(tmp_path / "test") + ",radius=40")
    assert ds.radius == 40 and len(ds.queries) == 8 and ds.queries.heading is None
    np.testing.assert_allclose(np.sort(ds.database.xy, axis=0), np.sort(np.round(db_xy, 2), axis=0))
    want = brute_positives(ds.database.xy, ds.queries.xy, 40)
    assert [p.tolist() for p in ds.ground_truth.positives] == want


# --------------------------------------------------------------------- Pittsburgh .mat
def write_dbstruct(path: Path, db_names, utm_db, q_names, utm_q, radius=25.0, **override) -> None:
    struct = {
        "whichSet": "test",
        "dbImage": np.array(db_names, dtype=object).reshape(-1, 1),
        "utmDb": np.asarray(utm_db, float).T,  # MATLAB layout (2, N)
        "qImage": np.array(q_names, dtype=object).reshape(-1, 1),
        "utmQ": np.asarray(utm_q, float).T,
        "numDb": len(db_names),
        "numQ": len(q_names),
        "posDistThr": radius,
        "posDistSqThr": radius ** 2,
        "nonTrivPosDistSqThr": 100.0,
    }
    struct.update(override)
    struct = {k: v for k, v in struct.items() if v is not None}
    savemat(str(path), {"dbStruct": struct})


def test_pittsburgh_mat(tmp_path: Path, make_images) -> None:
    rng = np.random.default_rng(1)
    db_names = [f"000/{i:06d}_pitch1_yaw{i % 12 + 1}.jpg" for i in range(30)]
    q_names = [f"{i:06d}_query.jpg" for i in range(10)]
    utm_db = rng.uniform(0, 100, (30, 2)) + [584000, 4476000]
    utm_q = rng.uniform(0, 100, (10, 2)) + [584000, 4476000]
    make_images(tmp_path, db_names)
    make_images(tmp_path / "queries_real", q_names)
    (tmp_path / "datasets").mkdir()
    mat = tmp_path / "datasets" / "pitts30k_test.mat"
    write_dbstruct(mat, db_names, utm_db, q_names, utm_q, radius=25.0)
    db, q, radius = formats.load_pittsburgh_mat(mat)
    assert radius == 25.0 and db.paths == db_names and q.paths == q_names
    assert db.root == tmp_path and q.root == tmp_path / "queries_real"
    assert all(p.is_file() for p in db.abs_paths() + q.abs_paths())
    np.testing.assert_allclose(db.xy, utm_db)
    np.testing.assert_allclose(q.xy, utm_q)
    ds = load_dataset(mat)
    assert [p.tolist() for p in ds.ground_truth.positives] == brute_positives(utm_db, utm_q, 25.0)
    ds = load_dataset(f"{mat},radius=10")
    assert [p.tolist() for p in ds.ground_truth.positives] == brute_positives(utm_db, utm_q, 10.0)


def test_pittsburgh_mat_errors(tmp_path: Path) -> None:
    mat = tmp_path / "bad.mat"
    write_dbstruct(mat, ["a.jpg", "b.jpg"], np.zeros((2, 2)), ["q.jpg"], np.zeros((1, 2)), numDb=3)
    with pytest.raises(DatasetError, match="numDb = 3 but it lists 2"):
        formats.load_pittsburgh_mat(mat)
    write_dbstruct(mat, ["a.jpg", "b.jpg"], np.zeros((2, 2)), ["q.jpg"], np.zeros((1, 2)), utmQ=None)
    with pytest.raises(DatasetError, match="no field utmQ"):
        load_dataset(mat)
    savemat(str(mat), {"other": 1})
    with pytest.raises(DatasetError, match="missing variable 'dbStruct'"):
        load_dataset(mat)


# --------------------------------------------------------------------- Patch-NetVLAD
def test_patchnetvlad_lists_and_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    utm_db, utm_q = rng.uniform(0, 60, (12, 2)), rng.uniform(0, 60, (5, 2))
    (tmp_path / "index.txt").write_text("\n".join(f"db/{i}.jpg" for i in range(12)) + "\n")
    (tmp_path / "query.txt").write_text("\n".join(f"q/{i}.jpg" for i in range(5)))
    np.savez(tmp_path / "gt.npz", utmQ=utm_q, utmDb=utm_db, posDistThr=15.0)
    ds = load_dataset(f"patchnetvlad:{tmp_path / 'index.txt'},{tmp_path / 'query.txt'},{tmp_path / 'gt.npz'}")
    assert ds.database.paths[3] == "db/3.jpg" and len(ds.queries) == 5 and ds.radius == 15.0
    assert [p.tolist() for p in ds.ground_truth.positives] == brute_positives(utm_db, utm_q, 15.0)
    np.savez(tmp_path / "gt.npz", utmQ=utm_q[:4], utmDb=utm_db, posDistThr=15.0)
    with pytest.raises(DatasetError, match="utmQ has shape"):
        formats.load_patchnetvlad(tmp_path / "index.txt", tmp_path / "query.txt", tmp_path / "gt.npz")
    np.savez(tmp_path / "gt.npz", utmQ=utm_q, utmDb=utm_db)
    with pytest.raises(DatasetError, match="posDistThr"):
        formats.load_patchnetvlad(tmp_path / "index.txt", tmp_path / "query.txt", tmp_path / "gt.npz")


# --------------------------------------------------------------------- VPR-Bench
def write_vprbench(root: Path, make_images, n_ref: int, n_q: int, rows) -> None:
    make_images(root / "ref", [f"{i:07d}.jpg" for i in range(n_ref)])
    make_images(root / "query", [f"{i:07d}.jpg" for i in range(n_q)])
    gt = np.empty((len(rows), 2), dtype=object)
    for i, (qi, refs) in enumerate(rows):
        gt[i, 0], gt[i, 1] = qi, refs
    np.save(root / "ground_truth_new.npy", gt, allow_pickle=True)


def test_vprbench_folder(tmp_path: Path, make_images) -> None:
    write_vprbench(tmp_path, make_images, 12, 3, [(1, [5, 4]), (0, [0, 1, 2]), (2, 11)])
    ds = load_dataset(tmp_path)
    assert [p.tolist() for p in ds.ground_truth.positives] == [[0, 1, 2], [4, 5], [11]]
    assert ds.database.paths[10] == "0000010.jpg"


def test_vprbench_ground_truth_must_match_image_counts(tmp_path: Path, make_images) -> None:
    write_vprbench(tmp_path / "a", make_images, 5, 3, [(0, [0]), (1, [1])])
    with pytest.raises(DatasetError, match="lists 2 queries but the query folder has 3"):
        load_dataset(tmp_path / "a")
    write_vprbench(tmp_path / "b", make_images, 5, 2, [(0, [0]), (1, [7])])
    with pytest.raises(DatasetError, match="database index 7"):
        load_dataset(tmp_path / "b")


@pytest.mark.data
def test_corridor_real_data(real_data: Path) -> None:
    ds = load_dataset(real_data / "corridor")
    assert len(ds.database) == 111 and len(ds.queries) == 111
    assert ds.ground_truth.positives[0].tolist() == [0, 1, 2]
    assert all(i in p for i, p in enumerate(ds.ground_truth.positives))  # same route, index-aligned
    assert all(p.is_file() for p in ds.queries.abs_paths()[:5])


# --------------------------------------------------------------------- aligned traverses
def test_aligned_and_reversed(tmp_path: Path, make_images) -> None:
    names = [f"images-{i * 10:05d}.png" for i in range(1, 13)]  # natural order past 100
    make_images(tmp_path / "summer", names)
    make_images(tmp_path / "winter", names)
    ds = load_dataset(f"aligned:{tmp_path / 'summer'},{tmp_path / 'winter'},tol=1")
    assert ds.database.paths == names
    assert ds.ground_truth.positives[5].tolist() == [4, 5, 6]
    rev = load_dataset(f"aligned:{tmp_path / 'summer'},{tmp_path / 'winter'},tol=1,reverse")
    assert rev.ground_truth.positives[0].tolist() == [10, 11]
    assert rev.ground_truth.positives[5].tolist() == [5, 6, 7]
    make_images(tmp_path / "short", names[:-1])
    with pytest.raises(DatasetError, match="differ in length"):
        load_dataset(f"aligned:{tmp_path / 'summer'},{tmp_path / 'short'}")


@pytest.mark.data
def test_nordland_real_data(real_data: Path) -> None:
    ds = load_dataset(f"aligned:{real_data / 'nordland_thumbs' / 'summer'},{real_data / 'nordland_thumbs' / 'winter'},tol=2")
    assert len(ds.database) == len(ds.queries) == 1788
    assert ds.database.paths == ds.queries.paths
    assert ds.ground_truth.positives[100].tolist() == [98, 99, 100, 101, 102]


# --------------------------------------------------------------------- PAL / Yuquan
def write_pal(folder: Path, make_images, n_images: int, lonlat: np.ndarray, overlap: str = None) -> None:
    make_images(folder, [f"{i}.png" for i in range(n_images)])  # unpadded: natural order matters
    (folder / "GPS.txt").write_text("\n".join(f"{lo:.7f} {la:.7f}" for lo, la in lonlat) + "\n")
    if overlap is not None:
        (folder / "Overlap.txt").write_text(overlap)


def test_pal_gps_is_resampled_to_the_image_count(tmp_path: Path, make_images) -> None:
    fixes = np.array([[120.12, 30.26], [120.13, 30.27], [120.15, 30.27]])  # 3 fixes, 5 images
    write_pal(tmp_path / "db", make_images, 5, fixes)
    imageset, on_route = formats.load_pal_folder(tmp_path / "db")
    assert on_route is None and imageset.paths[2] == "2.png" and imageset.paths[4] == "4.png"
    # image i at t = i/4, fixes at t = 0, 0.5, 1
    np.testing.assert_allclose(imageset.latlon[:, 1], [120.12, 120.125, 120.13, 120.14, 120.15])
    np.testing.assert_allclose(imageset.latlon[:, 0], [30.26, 30.265, 30.27, 30.27, 30.27])
    assert imageset.xy is not None and np.linalg.norm(imageset.xy[4] - imageset.xy[0]) > 2000


@pytest.mark.parametrize("overlap", ["0\n1\n1\n1\n0\n0\n", "1 3\n", "1 1\n2 3\n"])
def test_pal_overlap_marks_valid_queries(tmp_path: Path, make_images, overlap: str) -> None:
    lonlat = np.stack([np.linspace(120.1, 120.101, 6), np.full(6, 30.2)], axis=1)
    write_pal(tmp_path / "db", make_images, 6, lonlat)
    write_pal(tmp_path / "q", make_images, 6, lonlat + [0.00002, 0.0], overlap)
    ds = load_dataset(f"pal:{tmp_path / 'db'},{tmp_path / 'q'},radius=10")
    assert ds.ground_truth.valid.tolist() == [False, True, True, True, False, False]
    assert all(i in p for i, p in enumerate(ds.ground_truth.positives))  # ~2 m apart
    assert ds.radius == 10


def test_pal_overlap_errors(tmp_path: Path, make_images) -> None:
    lonlat = np.array([[120.1, 30.2], [120.2, 30.2]])
    write_pal(tmp_path / "q", make_images, 4, lonlat, "1\n0\n1\n")
    with pytest.raises(DatasetError, match="Overlap.txt has 3 lines but the folder has 4"):
        formats.load_pal_folder(tmp_path / "q")
    (tmp_path / "q" / "Overlap.txt").write_text("2 9\n")
    with pytest.raises(DatasetError, match="ranges"):
        formats.load_pal_folder(tmp_path / "q")
    (tmp_path / "q" / "GPS.txt").unlink()
    with pytest.raises(DatasetError, match="missing GPS.txt"):
        load_dataset(f"pal:{tmp_path / 'q'},{tmp_path / 'q'}")


# --------------------------------------------------------------------- dispatcher
def test_csv_pair_in_different_utm_zones(tmp_path: Path) -> None:
    # database starts in zone 32, queries in zone 33: both must be put in one frame
    db = ImageSet("db", tmp_path, ["d0.png", "d1.png"], latlon=np.array([[48.0, 11.9999], [48.0, 12.0004]]))
    q = ImageSet("q", tmp_path, ["q0.png"], latlon=np.array([[48.0, 12.0001]]))
    write_csv(db, tmp_path / "db.csv")
    write_csv(q, tmp_path / "q.csv")
    ds = load_dataset(f"{tmp_path / 'db.csv'},{tmp_path / 'q.csv'},radius=20")
    assert ds.ground_truth.positives[0].tolist() == [0]  # d0 is ~15 m away, d1 ~22 m
    assert load_pair(tmp_path / "db.csv", tmp_path / "q.csv", radius=25).ground_truth.positives[0].tolist() == [0, 1]


def test_single_csv_and_folder_with_one_csv(tmp_path: Path) -> None:
    s = ImageSet("w", tmp_path / "world", ["f/0.png"], xy=np.array([[1.0, 2.0]]))
    write_csv(s, tmp_path / "world" / "frames.csv")
    for spec in (tmp_path / "world" / "frames.csv", tmp_path / "world", f"csv:{tmp_path / 'world' / 'frames.csv'}"):
        ds = load_dataset(spec)
        assert ds.queries is None and ds.database.paths == ["f/0.png"]


def test_unknown_format_lists_what_was_looked_for(tmp_path: Path, make_images) -> None:
    make_images(tmp_path / "plain", ["a.png", "b.png"])
    with pytest.raises(DatasetError, match="ground_truth_new.npy.*GPS.txt.*aligned:"):
        load_dataset(tmp_path / "plain")
    with pytest.raises(DatasetError, match="dataset not found"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DatasetError, match=r"expected \.csv or \.mat"):
        load_dataset(tmp_path / "x.json")
    with pytest.raises(DatasetError, match="unknown dataset option 'tolx'"):
        parse_spec("aligned:a,b,tolx=3")
    (tmp_path / "nopos.csv").write_text("image\na.png\n")
    with pytest.raises(DatasetError, match="no positions"):
        load_pair(tmp_path / "nopos.csv", tmp_path / "nopos.csv")


def test_parse_spec() -> None:
    s = parse_spec("aligned:/a/b,/c/d,tol=3,reverse")
    assert (s.kind, s.paths, s.options) == ("aligned", ["/a/b", "/c/d"], {"tol": 3, "reverse": True})
    assert parse_spec("C.mat,radius=12.5").options == {"radius": 12.5}
    assert isinstance(GroundTruth.from_tolerance(1, 1), GroundTruth)


def test_vprbench_ground_truth_payload_never_runs(tmp_path: Path, make_images, hostile) -> None:
    write_vprbench(tmp_path / "v", make_images, 3, 2, [(0, [0]), (1, [1])])
    gt = hostile.npy(tmp_path / "v" / "ground_truth_new.npy", rows=2)
    hostile.live(lambda: np.load(gt, allow_pickle=True))
    with pytest.raises(DatasetError, match="builtins.exec, which is not numpy data") as err:
        load_dataset(tmp_path / "v")
    assert "\n" not in str(err.value) and "ground_truth_new.npy" in str(err.value)
    assert not hostile.marker.exists()


def test_read_npy_gives_what_np_load_gives_for_numpy_data(tmp_path: Path) -> None:
    plain = np.arange(6.0).reshape(2, 3)
    np.save(tmp_path / "plain.npy", plain)
    assert np.array_equal(formats.read_npy(tmp_path / "plain.npy"), plain)
    obj = np.empty((3, 2), dtype=object)
    obj[0] = [0, [1, 2]]
    obj[1] = [np.int64(1), np.array([3, 4])]
    obj[2] = [2, {"refs": (5, "x", 1.5, None)}]
    for protocol_2 in (False, True):
        path = tmp_path / f"obj{protocol_2}.npy"
        with open(path, "wb") as f:  # numpy writes protocol 4; VPR-Bench's file is a protocol 2 pickle
            np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(obj))
            pickle.dump(obj, f, protocol=2 if protocol_2 else 4)
        got, want = formats.read_npy(path), np.load(path, allow_pickle=True)
        assert got.shape == want.shape and got.dtype == want.dtype
        for a, b in zip(got.ravel(), want.ravel()):
            assert type(a) is type(b) and repr(a) == repr(b)
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY junk")
    with pytest.raises(DatasetError, match="cannot read"):
        formats.read_npy(tmp_path / "junk.npy")


@pytest.mark.data
def test_real_vprbench_ground_truth_loads_as_with_np_load(shared_data: Path) -> None:
    """The corridor set's ground_truth_new.npy (a Python 2 pickle of lists) loads identically."""
    path = shared_data / "corridor" / "ground_truth_new.npy"
    got = formats.read_npy(path)
    want = np.load(path, allow_pickle=True)  # the trusted reference file, as before the change
    assert got.shape == want.shape == (111, 2) and got.dtype == want.dtype
    for a, b in zip(got.ravel(), want.ravel()):
        assert type(a) is type(b) and a == b
