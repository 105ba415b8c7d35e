"""Small inputs shared by the option, image and garbage-file fault cases (made once per module)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.faults.harness import write_images, write_store


@dataclass
class Inputs:
    """Paths of valid inputs every verb can be pointed at (the bad part is the option or file
    the case adds)."""

    root: Path
    images: Path  # 3 PNGs
    store: Path  # 3 x 64 descriptors named like the images
    index: Path  # flat index of ``store``
    csv: Path  # panoplace CSV of the images with x,y positions
    file: Path  # an existing file whose content does not matter (refused before it is read)

    def all(self) -> list:
        return [self.images, self.store, self.index, self.csv, self.file]


def make_inputs(root: Path) -> Inputs:
    from panoplace.steps import index

    root.mkdir(parents=True, exist_ok=True)
    images = write_images(root / "images", 3)
    store = write_store(root / "db.h5", 3)
    idx = root / "db.index"
    index(store, idx)
    csv = root / "frames.csv"
    csv.write_text("image,x,y\n" + "".join(f"images/{i:07d}.png,{10 * i},0\n" for i in range(3)))
    file = root / "some.file"
    file.write_bytes(b"not read")
    return Inputs(root, images, store, idx, csv, file)
