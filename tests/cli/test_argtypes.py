"""The argparse value types of every verb: ranges, finiteness, booleans, inputs that must exist."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from panoplace.cli import argtypes as t
from panoplace.errors import InputError


@pytest.mark.parametrize("fn,good,bad", [
    (t.positive_int, [("1", 1), (" 7 ", 7)], ["0", "-1", "1.5", "1e3", "x", ""]),
    (t.non_negative_int, [("0", 0), ("3", 3)], ["-1", "0.5", "nan"]),
    (t.int_between(1, 100), [("1", 1), ("100", 100)], ["0", "101"]),
    (t.positive_float, [("0.5", 0.5), ("1e3", 1000.0)], ["0", "-1", "nan", "inf", "-inf", "x"]),
    (t.non_negative_float, [("0", 0.0)], ["-0.1", "nan"]),
    (t.finite_float, [("-3.5", -3.5)], ["nan", "inf"]),
    (t.probability, [("0", 0.0), ("1", 1.0)], ["1.01", "-0.01", "nan"]),
    (t.float_between(0, 1, lo_open=True, hi_open=True), [("0.5", 0.5)], ["0", "1"]),
    (t.boolean, [("true", True), ("No", False), ("1", True), ("off", False)], ["maybe", "2", ""]),
    (t.device, [("auto", "auto"), ("cuda:1", "cuda:1")], ["gpu", "cuda:x", "CPU"]),
    (t.port, [("8080", 8080)], ["0", "65536"]),
])
def test_values_are_parsed_or_refused_with_the_value_named(fn, good, bad) -> None:
    for text, value in good:
        assert fn(text) == value and type(fn(text)) is type(value)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="got"):
            fn(text)


def test_inputs_that_must_exist_are_checked_after_parsing(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    ns = argparse.Namespace(a=t.existing_file("index file")(str(tmp_path / "f.txt")),
                            b=[t.existing_path()(str(tmp_path))], c="plain")
    t.check_paths(ns)
    assert ns.a == str(tmp_path / "f.txt") and type(ns.a) is str and ns.b == [str(tmp_path)]
    for value, message in [(t.existing_file("index file")(str(tmp_path / "no")), "index file not found"),
                           (t.existing_file("checkpoint")(str(tmp_path)), "is a folder"),
                           (t.existing_dir("map folder")(str(tmp_path / "f.txt")), "is not a folder")]:
        with pytest.raises(InputError, match=message):
            t.check_paths(argparse.Namespace(x=value))
    assert t.weights("imagenet") == "imagenet"
    with pytest.raises(InputError, match="weights file"):
        t.check_paths(argparse.Namespace(w=t.weights(str(tmp_path / "missing.pth"))))


def test_refuse_unless_names_the_options_given() -> None:
    ns = argparse.Namespace(nlist=8, m=None, half=False, recall=[])
    t.refuse_unless(True, ns, ["nlist"], "to --kind ivfpq")
    t.refuse_unless(False, ns, ["m", "half", "recall"], "never")  # none given: nothing to refuse
    with pytest.raises(InputError, match=r"^--nlist applies only to --kind ivfpq$"):
        t.refuse_unless(False, ns, ["nlist", "m"], "to --kind ivfpq")
