"""Files an installed cryorl needs, shipped inside the package: environment presets (``envs/*.yaml``), training
hyper-parameters (``hyperparams/*.yml``) and the shipped learned policies (``pretrained/NAME/``).

In a checkout, the top-level ``envs/``, ``agents/hyperparams/`` and ``agents/pretrained/`` are links to these
folders: one copy, edited where users look for it and found by an installed wheel.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["RESOURCES", "PRESET_DIR", "HYPERPARAMS_DIR", "PRETRAINED_DIR"]

RESOURCES = Path(str(files(__name__)))      # an unpacked install (wheel or checkout) keeps them as plain files
PRESET_DIR = RESOURCES / "envs"
HYPERPARAMS_DIR = RESOURCES / "hyperparams"
PRETRAINED_DIR = RESOURCES / "pretrained"
