"""Hole tables: one row per hole, as ``Atlas.save`` and ``cryorl holes`` write them (``.csv`` or ``.parquet``).

Columns ``hole, tile, square, patch, x, y`` (or ``x_um, y_um`` / ``x_px, y_px``), ``true_ctf``, ``predicted_ctf``
and optionally ``predicted_good``, ``ctf_confidence``; ``stage_x_um, stage_y_um`` give stage positions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryorl.atlas import Atlas
from cryorl.formats.base import Grid, GridFormat, register_format

__all__ = ["HOLE_TABLE"]

SUFFIXES = (".csv", ".parquet")


def _detect(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SUFFIXES


def _load(path: Path, split: str | None) -> Grid:
    atlas = Atlas.load(path)
    stage = None
    if path.suffix.lower() == ".csv":
        columns = pd.read_csv(path, comment="#", nrows=0).columns
        if {"stage_x_um", "stage_y_um"} <= set(columns):
            from cryorl.stage import read_stage_positions

            stage = read_stage_positions(path, atlas)
    else:
        frame = pd.read_parquet(path)
        if {"stage_x_um", "stage_y_um"} <= set(frame.columns):
            rows = frame.set_index("hole").loc[list(atlas.names)]
            stage = (rows["stage_x_um"].to_numpy(np.float64), rows["stage_y_um"].to_numpy(np.float64))
    return Grid(atlas, path, "hole table", None, stage=stage)


HOLE_TABLE = register_format(GridFormat(
    "hole table", "a .csv or .parquet hole table as Atlas.save and `cryorl holes` write it",
    _detect, lambda path: [], _load))
