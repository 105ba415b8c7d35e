"""Panorama geometry (numpy + OpenCV only, no torch).

- :mod:`~panoplace.panorama.annular`: annulus geometry and unwrapping of panoramic annular images.
- :mod:`~panoplace.panorama.calibrate`: automatic annulus calibration from one or more images.
- :mod:`~panoplace.panorama.equirect`: elevation bands of equirectangular panoramas.
- :mod:`~panoplace.panorama.crops`: equal crops and sliding windows around a 360° panorama.
- :mod:`~panoplace.panorama.project`: image file → panorama → K crops (per ``PanoramaConfig``).
- :mod:`~panoplace.panorama.folder`: unwrapping a whole folder (``panoplace unwrap``).
"""

from panoplace.panorama.annular import (
    AnnularUnwrapper,
    AnnulusGeometry,
    load_geometry,
    save_geometry,
    unwrap_annulus,
)
from panoplace.panorama.calibrate import calibrate_annulus
from panoplace.panorama.crops import crop_windows, extract_crops
from panoplace.panorama.equirect import equirect_band
from panoplace.panorama.folder import UnwrapResult, unwrap_folder
from panoplace.panorama.project import image_to_crops, make_panorama, read_image, write_image

__all__ = [
    "AnnularUnwrapper",
    "AnnulusGeometry",
    "UnwrapResult",
    "calibrate_annulus",
    "crop_windows",
    "equirect_band",
    "extract_crops",
    "image_to_crops",
    "load_geometry",
    "make_panorama",
    "read_image",
    "save_geometry",
    "unwrap_annulus",
    "unwrap_folder",
    "write_image",
]
