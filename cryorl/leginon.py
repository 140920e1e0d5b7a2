"""Leginon image names and the grid hierarchy they encode.

``21mar02c_grid1c_00019gr_00023sq_v01_00006hl_v01_00005en-a`` is atlas tile ``…00019gr`` → square
``…00023sq_v01`` → patch (hole-magnification image) ``…00006hl_v01`` → exposure ``…00005en-a`` of one hole.
``_vNN`` is an image version and ``-a`` an exposure variant (the aligned copy).

Leginon re-acquires a target as a new *version* of the same image (``…00006hl_v01`` and ``…00006hl_v02``). As in
the CryoRL reference, which groups holes by the name prefix that ends in ``sq`` / ``hl``, every version of a target
belongs to one square or patch: a square is named ``…00023sq`` (its version dropped) and a patch
``…00023sq_v01_00006hl`` (the patch version dropped, the square image it was targeted from kept). Hole names are
never changed, so the version of each exposure stays visible.
"""
from __future__ import annotations

import re

import pandas as pd

__all__ = ["LEGINON_EXPOSURE", "LEGINON_TARGET", "parse_exposure_names", "is_target_name", "exposure_name"]

LEGINON_EXPOSURE = re.compile(
    r"^(?P<tile>.+?_\d+gr)_(?P<square>\d+sq)(?P<square_version>_v\d+)?_(?P<patch>\d+hl)(?P<patch_version>_v\d+)?"
    r"_(?P<exposure>\d+en(?:-[A-Za-z0-9]+)?)$"
)

LEGINON_TARGET = re.compile(r"^.+?_\d+gr(?:_\d+sq(?:_v\d+)?(?:_\d+hl(?:_v\d+)?)?)?$")
"""The name of an atlas tile (``…00019gr``), square (``…00023sq_v01``) or patch (``…00006hl_v01``) image."""


def is_target_name(names: pd.Series) -> pd.Series:
    """Which names are atlas tile, square or patch images rather than exposures (whole-session files list both)."""
    return names.astype(str).str.match(LEGINON_TARGET)


def parse_exposure_names(names: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    """Split exposure names into tile, square and patch names (each level's name includes its parents').

    Returns the parsed table and a boolean Series marking the rows that parsed (rows that do not parse are NaN).
    Columns: ``tile``, ``square`` and ``patch`` — the grouping keys, one per target whatever its image versions
    (see the module docstring) — and ``patch_image``, the full name of the hole-magnification image the exposure
    was targeted on (``…00006hl_v02``), for matching image files. Vectorized: one regex pass over all names.
    """
    parts = names.astype(str).str.extract(LEGINON_EXPOSURE)
    ok = parts["tile"].notna()
    square = parts["tile"] + "_" + parts["square"]
    square_image = square + parts["square_version"].fillna("")
    patch = square_image + "_" + parts["patch"]
    patch_image = patch + parts["patch_version"].fillna("")
    return pd.DataFrame({"tile": parts["tile"], "square": square, "patch": patch, "patch_image": patch_image}), ok


def exposure_name(session: str, tile: int, square: int, patch: int, exposure: int, variant: str = "a") -> str:
    """A Leginon-style exposure name, e.g. ``exposure_name("21mar02c_grid1c", 19, 23, 6, 5)``."""
    suffix = f"-{variant}" if variant else ""
    return f"{session}_{tile:05d}gr_{square:05d}sq_v01_{patch:05d}hl_v01_{exposure:05d}en{suffix}"
