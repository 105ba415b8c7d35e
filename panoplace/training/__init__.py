"""Training: weakly supervised triplet ranking (mining from GPS, loss, trainer) and
PCA-whitening.

- :mod:`~panoplace.training.loss`: :func:`triplet_ranking_loss`, :func:`multi_similarity_loss`.
- :mod:`~panoplace.training.mining`: :class:`TripletMiner`, :class:`DescriptorCache`.
- :mod:`~panoplace.training.splits`: :class:`PlaceSplit`, :func:`load_split`, :func:`split_by_area`.
- :mod:`~panoplace.training.trainer`: :class:`TrainConfig`, :class:`Trainer`, :func:`train`,
  :func:`prepare_model`.
- :mod:`~panoplace.training.pca`: :func:`fit_pca_whitening`, :func:`whiten_checkpoint`,
  :func:`pca_recall_table`.
"""

from panoplace.training.loss import multi_similarity_loss, triplet_ranking_loss
from panoplace.training.mining import DescriptorCache, TripletMiner, Triplets, make_cache
from panoplace.training.pca import add_whitening, fit_pca_whitening, pca_recall_table, whiten, whiten_checkpoint
from panoplace.training.splits import PlaceSplit, concat_image_sets, load_split, split_by_area
from panoplace.training.trainer import (
    EpochRecord,
    TrainConfig,
    Trainer,
    TrainResult,
    prepare_model,
    recall_of,
    train,
)

__all__ = [
    "DescriptorCache",
    "EpochRecord",
    "PlaceSplit",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TripletMiner",
    "Triplets",
    "add_whitening",
    "concat_image_sets",
    "fit_pca_whitening",
    "load_split",
    "make_cache",
    "pca_recall_table",
    "prepare_model",
    "recall_of",
    "split_by_area",
    "train",
    "triplet_ranking_loss",
    "multi_similarity_loss",
    "whiten",
    "whiten_checkpoint",
]
