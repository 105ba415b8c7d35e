"""Record the reference outputs of :mod:`tests.regression.pipeline` (run once, before a refactor).

    .venv/bin/python -m tests.regression.record
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from tests.regression.pipeline import run

REFERENCE = Path(__file__).with_name("reference")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = run(Path(tmp))
    REFERENCE.mkdir(exist_ok=True)
    arrays = {k: v for k, v in out.items() if isinstance(v, np.ndarray)}
    np.savez_compressed(REFERENCE / "arrays.npz", **arrays)
    texts = {k: v for k, v in out.items() if not isinstance(v, np.ndarray)}
    (REFERENCE / "outputs.json").write_text(json.dumps(texts, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
