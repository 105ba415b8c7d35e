"""Retrieval latency and recall on a large synthetic map: exact (flat) vs IVF-PQ.

Database: N synthetic "place descriptors" in clusters of look-alike places with a low intrinsic
dimension (see :func:`make_data`). Queries: noisy copies of random database rows, so each query
has a true source row. For each index we report

- build: training + adding time (s);
- batch ms/q: wall time of one batched search of all queries, divided by Q;
- single ms/q: mean time of one-query searches (the latency of an online localiser);
- R@1 exact: fraction of queries whose top-1 is the exact inner-product top-1;
- R@1 source: fraction whose top-1 is the row the query was made from;
- MB: size of the serialised faiss index.

Usage::

    python benchmarks/bench_retrieval.py                  # N=100,000, D=512 (~1-2 min on 2 cores)
    python benchmarks/bench_retrieval.py --dims 512 4096  # also D=4096 (several minutes)

Timings depend on the machine and on its load; faiss uses all cores it is given
(``--threads``). On a shared 2-core machine under load, one faiss thread was faster than two
(OpenMP contention), hence ``--threads 1`` below.

Results (2-core shared VM, ``--threads 1``, N = 100,000)::

    D=512, Q=1000, latent dim 128 (default run, 30 s)
        D index              nprobe  build s batch ms/q single ms/q R@1 exact R@1 source       MB
      512 flat                    -      0.3      1.357      32.722     1.000      0.996    195.3
      512 ivfpq256,pq64x8         8     14.2      0.060       0.095     0.831      0.830      7.9
      512 ivfpq256,pq64x8        32     14.2      0.210       0.260     0.874      0.873      7.9

    D=512, Q=1000, isotropic clusters (--latent-dim 0; load average 8 during this run)
      512 flat                    -      0.4      1.487      43.042     1.000      1.000    195.3
      512 ivfpq256,pq64x8         8     32.3      0.155       0.285     0.952      0.952      7.9
      512 ivfpq256,pq64x8        32     32.3      0.560       0.661     0.954      0.954      7.9

    D=4096, Q=200, latent dim 128 (--dims 4096 --queries 200 --single 20, 3.5 min, machine loaded)
     4096 flat                    -      4.1     23.762     507.808     1.000      1.000   1562.5
     4096 ivfpq256,pq64x8         8    131.0      0.380       0.870     0.260      0.260     14.9
     4096 ivfpq256,pq64x8        32    131.0      0.643       0.841     0.265      0.265     14.9

    D=4096, Q=200, latent dim 128, with --pca 256 (``--dims 4096 --queries 200 --single 20``,
    3.3 min, 2026-11-24, idle but for a test run during the PCA training)
     4096 flat                           -      1.0      5.150     112.174     1.000      1.000   1562.5
     4096 ivfpq256,pq64x8                8     73.7      0.243       0.442     0.260      0.260     14.9
     4096 ivfpq256,pq64x8               32     73.7      0.397       0.595     0.265      0.265     14.9
     4096 pca256,ivfpq256,pq64x8         8     94.5      0.119       0.331     0.925      0.925     11.4
     4096 pca256,ivfpq256,pq64x8        32     94.5      0.359       0.578     0.975      0.975     11.4

Reading: exact search over 100k x 512 costs ~1 ms per query in a batch and ~30 ms alone on one
core; IVF-PQ is 10-100x faster and 25x smaller; its recall depends on how much of the
difference between look-alike places survives 8-bit codes of 8-dimensional sub-vectors (0.83-0.95
here). With 64 sub-quantisers a 4096-D descriptor gets 64 dimensions per 8-bit code and most of
the ranking is lost (R@1 0.26); ``panoplace index --pca 256`` projects first (faiss PCAR, ranked
by L2 on the unit descriptors) and keeps it (R@1 0.975 at nprobe 32) for 21 s more training and
a smaller file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoplace.index import build_index  # noqa: E402
from panoplace.store import DescriptorSet  # noqa: E402


def make_data(n: int, d: int, n_queries: int, latent_dim: int = 128, seed: int = 0):
    """Synthetic clustered descriptors with a low intrinsic dimension, like real ones.

    Places are drawn around ``n // 50`` cluster centres in a ``latent_dim``-dimensional space
    (cosine ~0.75 within a cluster), mapped to D dimensions by a random orthonormal basis, plus
    isotropic noise carrying ~8% of the energy; then L2-normalised. Queries are copies of random
    database rows with latent noise (cosine ~0.66 to their source) plus the same isotropic noise.
    ``latent_dim=0`` gives isotropic data instead (clusters directly in D dimensions, the same
    noise levels).

    Returns:
        ``db (n, d)``, ``queries (Q, d)`` float32 unit vectors and ``source (Q,)`` rows.
    """
    rng = np.random.default_rng(seed)
    dim = latent_dim or d
    basis = np.linalg.qr(rng.standard_normal((d, dim)).astype(np.float32))[0].T if latent_dim else None
    centres = rng.standard_normal((max(16, n // 50), dim)).astype(np.float32)
    labels = rng.integers(0, len(centres), n)
    iso = 0.3 / np.sqrt(d)

    def to_d(lat: np.ndarray) -> np.ndarray:
        x = lat / np.linalg.norm(lat, axis=1, keepdims=True)
        x = x @ basis if basis is not None else x
        x = x + iso * rng.standard_normal(x.shape, dtype=np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    db = np.empty((n, d), np.float32)
    lat_all = np.empty((n, dim), np.float32)
    step = 20_000
    for a in range(0, n, step):  # chunks keep peak memory at ~2x the database
        b = min(n, a + step)
        lat = centres[labels[a:b]] + 0.6 * rng.standard_normal((b - a, dim), dtype=np.float32)
        lat_all[a:b] = lat / np.linalg.norm(lat, axis=1, keepdims=True)
        db[a:b] = to_d(lat_all[a:b])
    source = rng.choice(n, n_queries, replace=False)
    q_lat = lat_all[source] + (1.0 / np.sqrt(dim)) * rng.standard_normal((n_queries, dim), dtype=np.float32)
    return db, to_d(q_lat), source


def measure(index, q: np.ndarray, n_single: int) -> Dict[str, float]:
    t = time.perf_counter()
    _, ids = index.search(q, 1)
    batch = (time.perf_counter() - t) / len(q)
    t = time.perf_counter()
    for i in range(n_single):
        index.search(q[i:i + 1], 1)
    single = (time.perf_counter() - t) / n_single
    return {"batch": batch * 1e3, "single": single * 1e3, "top1": ids[:, 0]}


def run(d: int, n: int, n_queries: int, nlist: int, m: int, nprobes: List[int], n_single: int,
        latent_dim: int, pcas: List[int]) -> List[Dict]:
    import faiss

    t = time.perf_counter()
    db, q, source = make_data(n, d, n_queries, latent_dim)
    print(f"# D={d}: generated {n} database + {n_queries} query descriptors in {time.perf_counter() - t:.1f}s",
          flush=True)
    ds = DescriptorSet(db, [str(i) for i in range(n)], {}, "bench")
    rows = []
    t = time.perf_counter()
    flat = build_index(ds, kind="flat")
    build = time.perf_counter() - t
    res = measure(flat, q, n_single)
    exact = res["top1"]
    rows.append({"D": d, "index": "flat", "nprobe": "-", "build": build, **res,
                 "mb": len(faiss.serialize_index(flat.index)) / 2 ** 20})
    del flat
    for pca in [0] + [p for p in pcas if 0 < p < d]:
        t = time.perf_counter()
        pq = build_index(ds, kind="ivfpq", nlist=nlist, m=m, nbits=8, nprobe=nprobes[0], pca=pca)
        build = time.perf_counter() - t
        mb = len(faiss.serialize_index(pq.index)) / 2 ** 20
        name = (f"pca{pca}," if pca else "") + f"ivfpq{nlist},pq{m}x8"
        for nprobe in nprobes:
            pq.set_nprobe(nprobe)
            rows.append({"D": d, "index": name, "nprobe": nprobe, "build": build,
                         **measure(pq, q, n_single), "mb": mb})
        del pq
    for r in rows:
        r["r1_exact"] = float((r["top1"] == exact).mean())
        r["r1_source"] = float((r["top1"] == source).mean())
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="database size (default 100,000)")
    p.add_argument("--queries", type=int, default=1000, help="queries (default 1000)")
    p.add_argument("--dims", type=int, nargs="+", default=[512], help="descriptor dimensions (default 512)")
    p.add_argument("--nlist", type=int, default=256, help="IVF cells (default 256)")
    p.add_argument("--m", type=int, default=64, help="PQ sub-quantisers (default 64)")
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 32], help="cells visited (default 8 32)")
    p.add_argument("--single", type=int, default=100, help="one-query searches timed (default 100)")
    p.add_argument("--latent-dim", type=int, default=128,
                   help="intrinsic dimension of the synthetic descriptors; 0 = isotropic (default 128)")
    p.add_argument("--threads", type=int, default=None, help="faiss threads (default: all)")
    p.add_argument("--pca", type=int, nargs="*", default=[256],
                   help="also IVF-PQ after a PCA to these dimensions (`panoplace index --pca`; default 256; "
                        "only where below D)")
    args = p.parse_args()
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = []
    for d in args.dims:
        rows += run(d, args.n, args.queries, args.nlist, args.m, args.nprobe, args.single, args.latent_dim,
                    args.pca)
    print(f"\nN={args.n:,} database descriptors, Q={args.queries} queries, latent dim "
          f"{args.latent_dim or 'isotropic'}, faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    head = f"{'D':>5} {'index':<25} {'nprobe':>6} {'build s':>8} {'batch ms/q':>10} {'single ms/q':>11} " \
           f"{'R@1 exact':>9} {'R@1 source':>10} {'MB':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['D']:>5} {r['index']:<25} {r['nprobe']:>6} {r['build']:>8.1f} {r['batch']:>10.3f} "
              f"{r['single']:>11.3f} {r['r1_exact']:>9.3f} {r['r1_source']:>10.3f} {r['mb']:>8.1f}")
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
