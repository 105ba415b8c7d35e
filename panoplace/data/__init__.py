"""Datasets: image sets (traverses), dataset formats and ground truth.

Light imports only (numpy; scipy and utm are imported where used).
"""

from panoplace.data.dataset import Dataset, load_dataset, load_pair, parse_spec
from panoplace.data.frames import ImageSet, latlon_to_xy, list_image_files, load_csv, write_csv
from panoplace.data.groundtruth import DEFAULT_RADIUS, GroundTruth

__all__ = [
    "DEFAULT_RADIUS",
    "Dataset",
    "GroundTruth",
    "ImageSet",
    "latlon_to_xy",
    "list_image_files",
    "load_csv",
    "load_dataset",
    "load_pair",
    "parse_spec",
    "write_csv",
]
