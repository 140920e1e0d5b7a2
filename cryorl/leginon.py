"""Leginon image names and the grid hierarchy they encode.

``21mar02c_grid1c_00019gr_00023sq_v01_00006hl_v01_00005en-a`` is atlas tile ``…00019gr`` → square
``…00023sq_v01`` → patch (hole-magnification image) ``…00006hl_v01`` → exposure ``…00005en-a`` of one hole.
``_vNN`` is an image version and ``-a`` an exposure variant (the aligned copy).
"""
from __future__ import annotations

import re

import pandas as pd

__all__ = ["LEGINON_EXPOSURE", "parse_exposure_names", "exposure_name"]

LEGINON_EXPOSURE = re.compile(
    r"^(?P<tile>.+?_\d+gr)_(?P<square>\d+sq(?:_v\d+)?)_(?P<patch>\d+hl(?:_v\d+)?)_(?P<exposure>\d+en(?:-[A-Za-z0-9]+)?)$"
)


def parse_exposure_names(names: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    """Split exposure names into full tile, square and patch names (each level's name includes its parents').

    Returns the parsed table (columns ``tile, square, patch``; rows that do not parse are NaN) and a boolean
    Series marking the rows that parsed. Vectorized: one regex pass over all names.
    """
    parts = names.astype(str).str.extract(LEGINON_EXPOSURE)
    ok = parts["tile"].notna()
    square = parts["tile"] + "_" + parts["square"]
    patch = square + "_" + parts["patch"]
    return pd.DataFrame({"tile": parts["tile"], "square": square, "patch": patch}), ok


def exposure_name(session: str, tile: int, square: int, patch: int, exposure: int, variant: str = "a") -> str:
    """A Leginon-style exposure name, e.g. ``exposure_name("21mar02c_grid1c", 19, 23, 6, 5)``."""
    suffix = f"-{variant}" if variant else ""
    return f"{session}_{tile:05d}gr_{square:05d}sq_v01_{patch:05d}hl_v01_{exposure:05d}en{suffix}"
