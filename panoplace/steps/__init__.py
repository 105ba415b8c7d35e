"""The public Python API: one typed function per pipeline step.

Each step takes paths or in-memory objects, calls the library, writes its output file when
given one, and returns its result (hloc's habit). The CLI verbs, the demo and the benchmarks call
these same functions.

==================  ==========================================  =====================================
step                what it does                                returns
==================  ==========================================  =====================================
:func:`cluster`     NetVLAD centroids by k-means → checkpoint   the checkpoint path
:func:`extract`     images → descriptors (HDF5 store)           :class:`~panoplace.extract.ExtractResult`
:func:`index`       database descriptors → faiss index          :class:`~panoplace.index.PlaceIndex`
:func:`localize`    queries → top-k places / sequence matches   :class:`Localization`
:func:`evaluate`    descriptors + ground truth → metrics        :class:`~panoplace.evaluation.metrics.EvaluationResult`
:func:`train`       triplet training from positions             :class:`~panoplace.training.TrainResult`
:func:`pca`         PCA-whitening into the checkpoint           :class:`PcaResult`
:func:`scene_predict`  scene categories + place descriptors     :class:`~panoplace.scene.predict.ScenePredictions`
:func:`scene_train`    a scene head on a frozen base            :class:`~panoplace.scene.train.SceneTrainResult`
==================  ==========================================  =====================================

Models are given one way per call: ``checkpoint=``, ``model=``, ``preset=`` (see
:mod:`panoplace.presets`) or ``pipeline=`` (:mod:`panoplace.steps.resolve`).

Why the steps live here and not on the package: ``panoplace.extract``, ``panoplace.cluster``,
``panoplace.index`` and ``panoplace.scene`` are library modules; a function of the same name on
``panoplace`` would be replaced by the module the moment anything imports it. So:
``from panoplace.steps import extract, cluster, ...`` (or ``from panoplace import steps``).
Importing this package loads torch, faiss and OpenCV; ``import panoplace`` alone loads none of them.

A session (``runs/world`` made by ``panoplace synth``)::

    from panoplace.steps import cluster, evaluate, extract, index, localize
    model = cluster("runs/world/day/frames.csv", "runs/model.pt", preset="equirect")
    day = extract("runs/world/day/frames.csv", "runs/day.h5", checkpoint=model)
    dusk = extract("runs/world/dusk/frames.csv", "runs/dusk.h5", checkpoint=model)
    found = localize(index(day.descriptors, "runs/day.index"), dusk.descriptors, "runs/predictions.csv",
                     database_set="runs/world/day/frames.csv")
    print(evaluate(dusk.descriptors, day.descriptors, "pair:runs/world/day/frames.csv,"
                   "runs/world/dusk/frames.csv", radius=10, matcher="hmm").summary())
"""

from panoplace.steps.clustering import cluster
from panoplace.steps.evaluation import evaluate
from panoplace.steps.extraction import extract
from panoplace.steps.indexing import index
from panoplace.steps.localization import Localization, localize
from panoplace.steps.scenes import scene_predict, scene_train
from panoplace.steps.training import train
from panoplace.steps.whitening import PcaResult, pca

__all__ = [
    "Localization",
    "PcaResult",
    "cluster",
    "evaluate",
    "extract",
    "index",
    "localize",
    "pca",
    "scene_predict",
    "scene_train",
    "train",
]
