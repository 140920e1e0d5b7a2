"""Stage positions of holes from a hole table (``hole, stage_x_um, stage_y_um``), as ``cryorl simulate`` writes
``holes.csv``: what plans and SerialEM navigator files need."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from cryorl.atlas import Atlas
from cryorl.loaders import DataFileError

__all__ = ["read_stage_positions"]


def read_stage_positions(path: str | os.PathLike, atlas: Atlas) -> tuple[np.ndarray, np.ndarray] | None:
    """Stage x, y (µm) of every hole from a hole table with ``hole``, ``stage_x_um`` and ``stage_y_um`` columns;
    None when the table has no stage columns."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)          # the text as written, for messages
    if not {"hole", "stage_x_um", "stage_y_um"} <= set(table.columns):
        return None
    repeated = table["hole"][table["hole"].duplicated()]
    if len(repeated):
        line = int(repeated.index[0]) + 2                                 # 1-based, after the header
        raise DataFileError(path, f"hole {repeated.iloc[0]!r} is listed twice", line)
    for column in ("stage_x_um", "stage_y_um"):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(float))
        if bad.any():
            line = int(np.flatnonzero(bad)[0]) + 2
            raise DataFileError(path, f"{column} {table[column].iloc[line - 2]!r} is not a finite number", line)
        table[column] = values
    by_name = table.set_index("hole")
    missing = [name for name in atlas.names if name not in by_name.index]
    if missing:
        raise DataFileError(path, f"no stage position for {len(missing)} holes (first: {missing[0]})")
    rows = by_name.loc[list(atlas.names)]
    return rows["stage_x_um"].to_numpy(float), rows["stage_y_um"].to_numpy(float)
