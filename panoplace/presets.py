"""Named presets: ready panorama + model configurations (hloc's ``confs`` habit).

A preset is a :class:`~panoplace.config.PipelineConfig` with a name and a line saying where its
numbers come from. ``get_preset(name)`` returns a fresh copy (callers may change it); an unknown
name raises :class:`~panoplace.errors.InputError` listing the names there are. The CLI offers
them as ``--preset NAME`` on the verbs that build a model (``cluster``, ``extract`` without
``--checkpoint``, ``train`` without ``--checkpoint``); options given on the command line override
the preset's fields.

Presets only name configurations measured in this repository:

- ``plain``: every image as it is, resized to one 224x224 crop, EfficientNet-Lite0 (offline
  ImageNet weights, default cut) + NetVLAD K=32: the library defaults, chosen by
  ``benchmarks/bench_default_backbone.py`` and confirmed on the real corridor set (160x120 fisheye
  images; NetVLAD from k-means R@1 0.910, ``benchmarks/bench_corridor.py``).
- ``equirect``: an equirectangular panorama's 40..-25 degree elevation band as a 1024x256
  cylinder in 4 crops of 224x224, NetVLAD K=32: the procedural-world demo's pipeline
  (``panoplace demo``; NetVLAD R@1 day->day2/dusk/night/fog 0.98/0.88/0.28/0.82,
  ``benchmarks/bench_demo.py``).
- ``annular``: the same cylinder unwrapped from a panoramic annular image (annulus
  auto-calibrated from the images when the config has none): ``panoplace demo --projection
  annular`` (R@1 0.66/0.48/0.30/0.44; see docs/NOTES.md for why it trails ``equirect``).
- ``equirect-gem`` / ``annular-gem``: the same panoramas with GeM pooling instead of NetVLAD:
  no clustering step, so ``extract`` can run without a checkpoint (the demo's GeM baseline).

Example:
    >>> from panoplace.presets import PRESETS, get_preset
    >>> sorted(PRESETS)
    ['annular', 'annular-gem', 'equirect', 'equirect-gem', 'plain']
    >>> cfg = get_preset("equirect")
    >>> cfg.panorama.projection, cfg.panorama.n_crops, cfg.model.aggregator
    ('equirect', 4, 'netvlad')
    >>> get_preset("fisheye")
    Traceback (most recent call last):
    ...
    panoplace.errors.InputError: unknown preset 'fisheye'; choose one of annular, annular-gem, equirect, ...
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict

from panoplace.config import ModelConfig, PanoramaConfig, PipelineConfig
from panoplace.errors import InputError

__all__ = ["PRESETS", "Preset", "get_preset", "preset_help"]


@dataclass(frozen=True)
class Preset:
    """A named :class:`PipelineConfig` and where its numbers come from."""

    pipeline: PipelineConfig
    description: str

    def config(self) -> PipelineConfig:
        """A fresh copy of the configuration (changing it leaves the preset alone)."""
        return copy.deepcopy(self.pipeline)


def _panorama(projection: str) -> PanoramaConfig:
    # the demo's cylinder: the 40..-25 degree band, 1024x256, 4 crops of 224x224
    return PanoramaConfig(projection=projection, elevation=(40.0, -25.0), pano_width=1024, pano_height=256,
                          n_crops=4, crop_size=(224, 224))


PRESETS: Dict[str, Preset] = {
    "plain": Preset(PipelineConfig(PanoramaConfig(), ModelConfig()),
                    "images as they are, one 224x224 crop, EfficientNet-Lite0 + NetVLAD K=32 "
                    "(the defaults; corridor fisheye set R@1 0.91)"),
    "equirect": Preset(PipelineConfig(_panorama("equirect"), ModelConfig()),
                       "equirectangular 40..-25 deg band, 1024x256, 4 crops of 224, NetVLAD K=32 (the demo)"),
    "annular": Preset(PipelineConfig(_panorama("annular"), ModelConfig()),
                      "panoramic annular image unwrapped to the equirect preset's cylinder (auto-calibrated), "
                      "NetVLAD K=32 (demo --projection annular)"),
    "equirect-gem": Preset(PipelineConfig(_panorama("equirect"), ModelConfig(aggregator="gem")),
                           "the equirect preset with GeM pooling (no clustering needed)"),
    "annular-gem": Preset(PipelineConfig(_panorama("annular"), ModelConfig(aggregator="gem")),
                          "the annular preset with GeM pooling (no clustering needed)"),
}


def get_preset(name: str) -> PipelineConfig:
    """A fresh :class:`PipelineConfig` of preset ``name`` (exact key).

    Raises:
        InputError: no preset of that name (the message lists the names there are).
    """
    preset = PRESETS.get(name)
    if preset is None:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    return preset.config()


def preset_help() -> str:
    """One line per preset, for ``--help``."""
    return "; ".join(f"{name}: {p.description}" for name, p in PRESETS.items())
