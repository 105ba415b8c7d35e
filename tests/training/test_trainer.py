"""Training runs on a tiny street: the loss falls, resuming is exact, checkpoints load in extract."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch

from panoplace.cli import main
from panoplace.config import ModelConfig
from panoplace.data.groundtruth import GroundTruth
from panoplace.errors import CheckpointError, InputError
from panoplace.models.build import build_model, weights_fingerprint
from panoplace.models.checkpoint import load_checkpoint
from panoplace.models.torchfile import read_torch_file
from panoplace.store import load_descriptors
from panoplace.training.trainer import recall_of
from panoplace.training import (
    EpochRecord,
    PlaceSplit,
    TrainConfig,
    Trainer,
    load_split,
    prepare_model,
    split_by_area,
    triplet_ranking_loss,
)

FAST = dict(batch_size=4, optimizer="sgd", lr=0.02, lr_step=1, lr_gamma=0.5, n_neg_sample=50, n_neg=4,
            queries_per_epoch=12, cache_refresh=12, num_workers=0, device="cpu", batch_size_describe=32,
            recall_ns=(1, 5))


def _splits(street: Dict[str, Path]):
    return load_split([street["day"]], [street["dusk"]]), load_split([street["day"]], [street["night"]])


def _trainer(street, checkpoint: Path, out: Path, **cfg) -> Trainer:
    model, panorama = load_checkpoint(checkpoint)
    train, val = _splits(street)
    return Trainer(model, panorama, train, val, out, TrainConfig(**{**FAST, **cfg}), progress=False)


@pytest.fixture(scope="module")
def two_epochs(street, clustered, tmp_path_factory):
    """Two epochs in one go, with the loss of fixed tuples before and after."""
    out = tmp_path_factory.mktemp("run_a")
    trainer = _trainer(street, clustered, out, epochs=2)
    fixed = trainer.mine(seed=123)
    trainer.miner.hard_negatives[:] = -1  # mining for the measurement must not change the run
    before = trainer.tuple_loss(fixed)
    result = trainer.fit()
    return {"out": out, "trainer": trainer, "result": result, "fixed": fixed, "before": before,
            "after": trainer.tuple_loss(fixed)}


def test_a_tiny_training_run_lowers_the_loss(two_epochs) -> None:
    assert len(two_epochs["fixed"]) > 5
    assert two_epochs["after"] < 0.7 * two_epochs["before"], (two_epochs["before"], two_epochs["after"])
    result = two_epochs["result"]
    assert [r.epoch for r in result.history] == [0, 1, 2]
    assert all(r.tuples > 0 and r.triplets >= r.tuples and np.isfinite(r.loss) for r in result.history[1:])
    assert result.history[2].lr == pytest.approx(0.5 * result.history[1].lr)  # the learning-rate step
    out = two_epochs["out"]
    assert (out / "latest.pt").is_file() and (out / "best.pt").is_file()
    with open(out / "epochs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"] and "recall@1" in rows[0]
    with open(out / "steps.csv") as f:
        steps = list(csv.DictReader(f))
    assert len(steps) == two_epochs["trainer"].step and all(np.isfinite(float(s["loss"])) for s in steps)


def test_resuming_from_latest_continues_identically(two_epochs, street, clustered, tmp_path) -> None:
    first = _trainer(street, clustered, tmp_path, epochs=1)
    first.fit()
    saved = read_torch_file(tmp_path / "latest.pt")
    resumed = Trainer.resume(tmp_path, *_splits(street), overrides={"epochs": 2}, progress=False)
    # the optimizer, scheduler, negatives memory and model state are exactly those saved
    opt = resumed.optimizer.state_dict()
    assert opt["param_groups"] == saved["extra"]["optimizer"]["param_groups"]
    for k, st in saved["extra"]["optimizer"]["state"].items():
        assert torch.equal(opt["state"][k]["momentum_buffer"], st["momentum_buffer"])
    assert resumed.epoch == 1 and resumed.scheduler.state_dict() == first.scheduler.state_dict()
    assert np.array_equal(resumed.miner.hard_negatives, first.miner.hard_negatives)
    assert weights_fingerprint(resumed.model) == weights_fingerprint(first.model)
    result = resumed.fit()
    assert [r.epoch for r in result.history] == [0, 1, 2]
    # ... and the second epoch ends where the uninterrupted run ended
    straight = two_epochs["trainer"].model.state_dict()
    for k, v in resumed.model.state_dict().items():
        assert torch.allclose(v, straight[k], atol=1e-6), k
    with open(tmp_path / "epochs.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["0", "1", "2"]


def test_trained_checkpoint_loads_in_extract_without_flags(two_epochs, street, tmp_path) -> None:
    best = two_epochs["out"] / "best.pt"
    out = tmp_path / "day.h5"
    assert main(["extract", str(street["day"]), "--checkpoint", str(best), "--out", str(out),
                 "--workers", "0", "--no-progress"]) == 0
    ds = load_descriptors(out)
    model, panorama = load_checkpoint(best)
    assert ds.fingerprint == weights_fingerprint(model)
    assert model.config.n_trainable == 1 and ds.config["panorama"]["n_crops"] == 2
    assert ds.descriptors.shape == (30, model.descriptor_dim(2))
    # the trained weights differ from the clustered start
    trained = read_torch_file(best)["extra"]
    assert trained["epoch"] == two_epochs["result"].best_epoch


def test_gradients_reach_every_crop_through_the_fusion(clustered) -> None:
    model, _ = load_checkpoint(clustered)
    prepare_model(model, attention="learned", remain=0.5)
    model.train()
    x = torch.randn(3, 2, 3, 32, 32, requires_grad=True)
    d = model(x)
    triplet_ranking_loss(d[:1], d[1:2], d[None, 2:], margin=10.0).backward()
    for b in range(3):
        for k in range(2):
            assert x.grad[b, k].abs().sum() > 0
    assert model.attention.conv1.weight.grad.abs().sum() > 0


def test_attention_head_trains_at_ten_times_the_rate(street, clustered, tmp_path) -> None:
    model, panorama = load_checkpoint(clustered)
    prepare_model(model, attention="learned", remain=0.5)
    assert model.config.attention == "learned" and model.config.attention_remain == 0.5
    train, val = _splits(street)
    t = Trainer(model, panorama, train, val, tmp_path, TrainConfig(**FAST), progress=False)
    base, att = t.optimizer.param_groups
    assert att["lr"] == pytest.approx(10 * base["lr"])
    assert {id(p) for p in att["params"]} == {id(p) for p in model.attention.parameters()}
    frozen = [p for n, p in model.named_parameters() if n.startswith("backbone.body.layer1")]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert not {id(p) for p in frozen} & {id(p) for g in t.optimizer.param_groups for p in g["params"]}


def test_early_stopping_after_patience(street, clustered, tmp_path, monkeypatch) -> None:
    trainer = _trainer(street, clustered, tmp_path, epochs=10, patience=2)
    recalls = iter([0.5, 0.6, 0.55, 0.58, 0.9])
    monkeypatch.setattr(trainer, "validate", lambda: {1: next(recalls), 5: 1.0})
    monkeypatch.setattr(trainer, "train_epoch", lambda e: EpochRecord(epoch=e, loss=0.1, tuples=1))
    result = trainer.fit()
    assert result.stopped_early and result.best_epoch == 1 and [r.epoch for r in result.history] == [0, 1, 2, 3]
    assert read_torch_file(tmp_path / "best.pt")["extra"]["epoch"] == 1


def test_split_by_area_leaves_a_gap(street) -> None:
    split = load_split([street["day"]], [street["dusk"], street["night"]])
    assert len(split.queries) == 60 and (split.same_frame() == -1).all()
    assert split.queries.paths[0] == "dusk/000.png"  # joined at the common folder
    train, val = split_by_area(split, 0.6, gap=25.0, axis=(1, 0))
    gap = val.database.xy[:, 0].min() - train.database.xy[:, 0].max()
    assert gap >= 25.0 and val.queries.xy[:, 0].min() - train.queries.xy[:, 0].max() >= 25.0
    with pytest.raises(InputError, match="train_fraction"):
        split_by_area(split, 1.0)


def test_mistakes_raise_clear_errors(street, clustered, tmp_path) -> None:
    train, val = _splits(street)
    whitened = build_model(ModelConfig(backbone="resnet18", cut="layer2", weights="none", aggregator="avg",
                                       whitening_dim=8))
    with pytest.raises(InputError, match="whitening"):
        prepare_model(whitened)
    frozen = build_model(ModelConfig(backbone="resnet18", cut="layer2", weights="none", aggregator="avg"))
    with pytest.raises(InputError, match="nothing to train"):
        Trainer(frozen, dataclasses.replace(load_checkpoint(clustered)[1]), train, val, tmp_path,
                TrainConfig(**FAST), progress=False)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        Trainer.resume(tmp_path / "none", train, val)
    far = PlaceSplit(train.database, dataclasses.replace(train.queries, xy=train.queries.xy + 1000.0))
    model, panorama = load_checkpoint(clustered)
    with pytest.raises(InputError, match="no training query"):
        Trainer(model, panorama, far, val, tmp_path, TrainConfig(**FAST), progress=False)
    with pytest.raises(InputError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")


def test_train_verb_with_area_split_and_attention(two_epochs, street, tmp_path) -> None:
    out = tmp_path / "cli"
    args = ["train", "--train-db", str(street["day"]), "--train-queries", str(street["dusk"]), "--val-area", "0.6",
            "--checkpoint", str(two_epochs["out"] / "best.pt"), "--out", str(out), "--epochs", "1",
            "--queries-per-epoch", "4", "--negatives", "2", "--neg-sample", "20", "--workers", "0",
            "--device", "cpu", "--no-progress", "--attention", "learned", "--remain", "0.75", "--frozen-cache", "off",
            "--cache", "hdf5"]
    assert main(args) == 0
    model, _ = load_checkpoint(out / "latest.pt")
    assert model.config.attention == "learned" and model.config.attention_remain == 0.75
    with open(out / "epochs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"] and int(rows[1]["tuples"]) > 0  # trained on decoded crops
    assert not (out / "mining_cache.h5").exists()  # the HDF5 mining cache is scratch space
    assert main(["train", "--train-db", str(street["day"]), "--train-queries", str(street["dusk"]),
                 "--val-area", "0.6", "--out", str(out), "--resume", "--checkpoint", "x.pt"]) == 2


def test_frozen_feature_cache_gives_the_same_descriptors_and_loss(street, clustered, tmp_path) -> None:
    for mode in ("learned", None):
        runs = {}
        for cache in ("on", "off"):
            model, panorama = load_checkpoint(clustered)
            prepare_model(model, attention=mode, seed=0)
            train, val = _splits(street)
            t = Trainer(model, panorama, train, val, tmp_path / f"{cache}{mode}", TrainConfig(**FAST, frozen_cache=cache),
                        progress=False)
            assert (t.frozen is not None) == (cache == "on")
            runs[cache] = t
        on, off = runs["on"], runs["off"]
        assert on.frozen.split == 5  # resnet18 to layer2 with one trainable unit: stem + layer1 frozen
        rows = np.arange(6)
        np.testing.assert_allclose(on._describe(on.train_split.queries, rows),
                                   off._describe(off.train_split.queries, rows), atol=1e-5)
        tuples = on.mine(queries=np.arange(8), seed=1)
        assert on.tuple_loss(tuples) == pytest.approx(off.tuple_loss(tuples), abs=1e-5)


def test_recall_of_ranks_by_similarity_with_ties_to_the_lower_index() -> None:
    rng = np.random.default_rng(0)
    db = rng.normal(size=(300, 8)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    q = np.concatenate([db[[5, 250, 7]], db[[40]]])
    q[3] = db[40]
    db[41] = db[40]  # query 3 ties between database 40 and 41: 40 ranks first
    gt = GroundTruth([np.array([5]), np.array([250]), np.array([8]), np.array([41])], np.ones(4, bool), 300)
    got = recall_of(q, db, gt, ns=(1, 2), chunk=3)  # two chunks
    assert got == {1: 0.5, 2: 0.75}
