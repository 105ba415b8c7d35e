"""Which files are images: the one list of image file extensions every reader uses.

``panoplace extract`` (and every step that runs a model over a folder), ``panoplace unwrap``,
the dataset loaders and the scene-training folders all accept the same files: the extensions
OpenCV decodes here (JPEG and TIFF in both spellings, PNG, BMP, WebP), in any letter case.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(path: Union[str, "os.PathLike[str]"]) -> bool:
    """True when ``path`` has an image extension (:data:`IMAGE_EXTENSIONS`, any case).

    Only the name is looked at; whether the file exists is the caller's question.

    >>> is_image_file("frames/0001.JPG"), is_image_file("scan.webp"), is_image_file("notes.txt")
    (True, True, False)
    """
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS
