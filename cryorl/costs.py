"""Collection costs: the minutes a microscope spends moving to the next hole, by how far it moves.

Switch levels, from cheapest to dearest:

====== ==================================== =====================
level  next hole is in …                    CryoRL 2023 / 2022
====== ==================================== =====================
0      the same patch                       1 / 2 min
1      another patch of the same square     2 / 5 min
2      another square of the same tile      6 / 10 min
3      another atlas tile                   8 / 20 min
====== ==================================== =====================
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["CollectionCosts", "COST_PRESETS", "SWITCH_LEVELS", "get_costs", "switch_level", "scalar_where",
           "switch_levels",
           "calibrate_costs", "collection_order"]

SWITCH_LEVELS = ("hole", "patch", "square", "tile")
"""Names of switch levels 0-3: a move to another hole, patch, square or atlas tile."""


@dataclass(frozen=True)
class CollectionCosts:
    """Minutes charged for a move to another hole in the same patch / patch / square / atlas tile."""

    hole: float
    patch: float
    square: float
    tile: float
    name: str = "custom"

    def __post_init__(self) -> None:
        values = self.as_array()
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ValueError(f"collection costs must be positive minutes, got {values.tolist()} ({self.name})")

    def as_array(self) -> np.ndarray:
        """Costs indexed by switch level (0 hole … 3 tile), in minutes."""
        return np.array([self.hole, self.patch, self.square, self.tile], dtype=np.float64)

    def __str__(self) -> str:
        return f"{self.name} ({self.hole:g}/{self.patch:g}/{self.square:g}/{self.tile:g} min)"


COST_PRESETS: dict[str, CollectionCosts] = {
    "cryorl-2023": CollectionCosts(1.0, 2.0, 6.0, 8.0, name="cryorl-2023"),
    "cryorl-2022": CollectionCosts(2.0, 5.0, 10.0, 20.0, name="cryorl-2022"),
    # Medians of the gaps between consecutive exposures of the real Aldolase session (training split,
    # benchmarks/grid_statistics.py --calibrate reproduces them from timestamps.csv).
    "aldolase-timestamps": CollectionCosts(1.52, 3.08, 9.25, 12.33, name="aldolase-timestamps"),
}


def get_costs(costs: str | CollectionCosts | dict | tuple | list) -> CollectionCosts:
    """Resolve a preset name, a mapping ``{hole, patch, square, tile}``, or four numbers into CollectionCosts."""
    if isinstance(costs, CollectionCosts):
        return costs
    if isinstance(costs, str):
        try:
            return COST_PRESETS[costs]
        except KeyError:
            raise ValueError(f"unknown cost preset {costs!r}; presets: {', '.join(COST_PRESETS)}") from None
    if isinstance(costs, dict):
        unknown = set(costs) - {"hole", "patch", "square", "tile", "name"}
        if unknown:
            raise ValueError(f"unknown cost keys {sorted(unknown)}; expected hole, patch, square, tile (minutes)")
        return CollectionCosts(**costs)
    values = list(costs)
    if len(values) != 4:
        raise ValueError(f"expected 4 costs (hole, patch, square, tile minutes), got {values}")
    return CollectionCosts(*map(float, values))


def switch_level(same_patch, same_square, same_tile, where=np.where):
    """The switch level of a move — 0 within a patch, 1 to another patch of the square, 2 to another square of the
    tile, 3 to another tile — from whether the two holes share a patch, a square, a tile. The one statement of the
    rule: ``where`` is ``np.where`` for arrays (default), ``torch.where`` for tensors, or
    :func:`scalar_where` for single moves."""
    return where(same_patch, 0, where(same_square, 1, where(same_tile, 2, 3)))


def scalar_where(condition: bool, if_true, if_false):
    """``np.where`` for one Python value (no array round trip), for :func:`switch_level` on a single move."""
    return if_true if condition else if_false


def switch_levels(tile: np.ndarray, square: np.ndarray, patch: np.ndarray, src, dst) -> np.ndarray:
    """Switch level (0-3) of moves from holes ``src`` to holes ``dst`` (arrays or scalars, broadcast)."""
    return switch_level(patch[src] == patch[dst], square[src] == square[dst], tile[src] == tile[dst])


def collection_order(timestamps: pd.DataFrame, names) -> pd.DataFrame:
    """The order in which a session exposed the given holes, from a timestamps table.

    Aligned copies (``…en-a``) are written hours after acquisition, so the raw exposure (``…en``) time is used
    where present. Returns ``hole`` (index into ``names``) and ``time``, sorted by time; holes without a time are
    left out.
    """
    times = dict(zip(timestamps["name"], timestamps["time"]))
    names = pd.Series(np.asarray(names, dtype=str))
    raw = names.str.replace(r"-[A-Za-z0-9]+$", "", regex=True)
    when = raw.map(times).fillna(names.map(times))
    order = when.dropna().sort_values(kind="stable")
    return pd.DataFrame({"hole": order.index.to_numpy(), "time": order.to_numpy()})


def calibrate_costs(timestamps: pd.DataFrame | str | os.PathLike, atlas, name: str = "calibrated",
                    max_gap_minutes: float = 60.0, min_moves: int = 3) -> CollectionCosts:
    """Median minutes between consecutive exposures, by switch level, from a real session's timestamps.

    Gaps longer than ``max_gap_minutes`` (breaks, refills, overnight pauses) are ignored. A level seen fewer than
    ``min_moves`` times is scaled from the patch level (else the hole level) with the CryoRL 2023 ratios: in the
    Aldolase session the operator's square and tile changes are hours apart, so only hole and patch moves calibrate.
    """
    if not isinstance(timestamps, pd.DataFrame):
        from cryorl.loaders import read_timestamps

        timestamps = read_timestamps(Path(timestamps))
    order = collection_order(timestamps, atlas.names)
    holes = order["hole"].to_numpy()
    gaps = np.diff(order["time"].to_numpy()).astype("timedelta64[s]").astype(np.float64) / 60.0
    levels = switch_levels(atlas.tile, atlas.square, atlas.patch, holes[:-1], holes[1:])
    keep = (gaps > 0) & (gaps <= max_gap_minutes)
    medians = []
    for level in range(4):
        selected = gaps[keep & (levels == level)]
        medians.append(float(np.median(selected)) if selected.size >= min_moves else np.nan)
    reference = COST_PRESETS["cryorl-2023"].as_array()
    for level in range(4):
        if not np.isfinite(medians[level]):
            base = 1 if np.isfinite(medians[1]) else 0
            medians[level] = medians[base] * reference[level] / reference[base]
    return CollectionCosts(*[round(m, 2) for m in medians], name=name)
