"""The ``>>>`` examples of the public steps API (and the presets) run as tests: they make their
own small data (random images, descriptor sets) and must keep giving the output they show."""

from __future__ import annotations

import doctest
import importlib
import logging

import pytest

MODULES = [
    "panoplace.presets",
    "panoplace.steps.resolve",
    "panoplace.steps.extraction",
    "panoplace.steps.clustering",
    "panoplace.steps.indexing",
    "panoplace.steps.localization",
    "panoplace.steps.evaluation",
    "panoplace.steps.training",
    "panoplace.steps.whitening",
    "panoplace.steps.scenes",
    "panoplace.pixels",
    "panoplace.matching.differences",
]
# modules whose docstrings must show at least one example
WITH_EXAMPLES = {"panoplace.presets", "panoplace.steps.resolve", "panoplace.steps.extraction",
                 "panoplace.steps.clustering", "panoplace.steps.indexing", "panoplace.steps.localization",
                 "panoplace.steps.evaluation", "panoplace.pixels", "panoplace.matching.differences"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    logging.getLogger("panoplace").setLevel(logging.WARNING)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed in {name}"
    if name in WITH_EXAMPLES:
        assert result.attempted > 0, f"{name} shows no runnable example"
