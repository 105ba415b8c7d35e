"""User text files: binary or non-UTF-8 data and bad JSON are one InputError line."""

from pathlib import Path

import pytest

from panoplace.errors import InputError
from panoplace.textfiles import read_json, read_text


def test_read_text_and_json(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes("\ufeffimage\ncafé.png\n".encode("utf-8"))
    assert read_text(tmp_path / "a.csv") == "image\ncafé.png\n"  # BOM dropped
    (tmp_path / "b.json").write_text('{"x": 1}')
    assert read_json(tmp_path / "b.json") == {"x": 1}
    cases = {"bin.csv": (b"\x89PNG\r\n\x1a\n\0\0", "binary data"), "latin.csv": ("caf\xe9".encode("latin-1"), "utf-8"),
             "bad.json": (b"{not json", "not valid JSON")}
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=message):
            read_json(tmp_path / name, "calibration") if name.endswith("json") else read_text(tmp_path / name)
    with pytest.raises(InputError, match="dataset CSV not found"):
        read_text(tmp_path / "missing.csv", "dataset CSV")
    with pytest.raises(InputError, match="is a folder"):
        read_text(tmp_path)
