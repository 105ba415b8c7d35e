"""Models: backbone registry, aggregators (NetVLAD, GeM, avg, max), crop fusion, the place model
and its checkpoints. See docs/CONTRACTS.md ("Models")."""

from panoplace.models.backbones import BACKBONES, Backbone, build_backbone
from panoplace.models.build import PlaceModel, Whitening, build_model, weights_fingerprint
from panoplace.models.checkpoint import load_checkpoint, load_places365_checkpoint, save_checkpoint
from panoplace.models.fusion import fuse
from panoplace.models.netvlad import NetVLAD
from panoplace.models.pooling import AvgPool, GeM, MaxPool

__all__ = [
    "BACKBONES",
    "AvgPool",
    "Backbone",
    "GeM",
    "MaxPool",
    "NetVLAD",
    "PlaceModel",
    "Whitening",
    "build_backbone",
    "build_model",
    "fuse",
    "load_checkpoint",
    "load_places365_checkpoint",
    "save_checkpoint",
    "weights_fingerprint",
]
