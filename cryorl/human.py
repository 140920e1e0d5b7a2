"""Human operators' collection traces: loading, the real clock, simulated operators, and comparisons with agents.

A trace is the order in which an operator exposed holes, with the real time of each exposure when known. Formats
read by :func:`load_human_trace`:

- a session's ``timestamps.csv`` (``name,time`` without header, Leginon names; only exposures, ``…en``, count),
- a CSV with a header naming a ``hole`` (or ``name``) column and optionally ``minutes`` (since the session start)
  or ``time`` (``YYYY-MM-DD HH:MM:SS``),
- a JSON list of hole names, a list of ``{"hole": …, "minutes": …}`` objects, or an object
  ``{"name": …, "holes": […], "minutes": […]}``,
- a text file with one hole name per line.

As in the environment, the first exposed hole is the starting point: it earns nothing and starts the clock.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cryorl.atlas import Atlas
from cryorl.costs import CollectionCosts, collection_order, get_costs, switch_levels
from cryorl.loaders import DataFileError
from cryorl.quality import predicted_quality

__all__ = ["HumanTrace", "load_human_trace", "real_clock", "simulate_operator", "percentile_rank", "jaccard"]

EXPOSURE_NAME = r"en(?:-[A-Za-z0-9]+)?$"      # Leginon exposure images: …_00003en, …_00003en-a


@dataclass(frozen=True)
class HumanTrace:
    """Hole names in collection order, and optionally the real minutes of each exposure since the first."""

    name: str
    holes: tuple[str, ...]
    minutes: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.minutes is not None:
            minutes = np.asarray(self.minutes, dtype=np.float64)
            if minutes.shape != (len(self.holes),):
                raise ValueError(f"trace {self.name!r}: {minutes.size} times for {len(self.holes)} holes")
            if not np.all(np.isfinite(minutes)):
                raise ValueError(f"trace {self.name!r}: times must be finite")
            object.__setattr__(self, "minutes", minutes)

    def __len__(self) -> int:
        return len(self.holes)

    def on(self, atlas: Atlas) -> pd.DataFrame:
        """The trace on a grid: ``hole`` (index into ``atlas.names``) and ``minutes`` (NaN when unknown), in
        collection order. Holes not on the grid are left out, a hole exposed again counts once (its first time), and a
        name matches with or without its ``-a`` suffix."""
        times = self.minutes if self.minutes is not None else np.arange(len(self.holes), dtype=np.float64)
        frame = pd.DataFrame({"name": list(self.holes), "time": times}).drop_duplicates("name")  # first exposure
        order = collection_order(frame, atlas.names)
        minutes = order["time"].to_numpy(np.float64) if self.minutes is not None else np.full(len(order), np.nan)
        if len(minutes):
            minutes = minutes - minutes[0]
        return pd.DataFrame({"hole": order["hole"].to_numpy(np.int64), "minutes": minutes})


def _from_timestamps(path: Path, name: str) -> HumanTrace:
    from cryorl.loaders import read_timestamps

    stamps = read_timestamps(path)
    exposures = stamps[stamps["name"].str.contains(EXPOSURE_NAME, regex=True)]
    raw = exposures["name"].str.replace(r"-[A-Za-z0-9]+$", "", regex=True)
    # aligned copies (…en-a) are written hours after the exposure: keep the raw exposure's time where present
    exposures = exposures[(raw == exposures["name"]) | ~raw.isin(set(exposures["name"]))]
    exposures = exposures.sort_values("time", kind="stable")
    if exposures.empty:
        raise DataFileError(path, "no exposure images (names ending in 'en') in this timestamps file")
    minutes = (exposures["time"] - exposures["time"].iloc[0]).dt.total_seconds().to_numpy() / 60.0
    return HumanTrace(name, tuple(exposures["name"]), minutes, str(path))


def _from_table(path: Path, frame: pd.DataFrame, name: str) -> HumanTrace:
    columns = {c.strip().lower(): c for c in frame.columns}
    hole_column = columns.get("hole", columns.get("name"))
    if hole_column is None:
        raise DataFileError(path, f"no 'hole' column (columns: {', '.join(map(str, frame.columns))})", 1)
    holes = frame[hole_column].astype(str).str.strip()
    empty = holes.isin(["", "nan"])
    if empty.any():
        raise DataFileError(path, "empty hole name", int(empty.to_numpy().argmax()) + 2)
    minutes = None
    if "minutes" in columns:
        minutes = pd.to_numeric(frame[columns["minutes"]], errors="coerce")
        what = "minutes"
    elif "time" in columns:
        times = pd.to_datetime(frame[columns["time"]], errors="coerce", format="%Y-%m-%d %H:%M:%S")
        minutes = (times - times.min()).dt.total_seconds() / 60.0
        what = "time"
    if minutes is not None:
        bad = minutes.isna().to_numpy()
        if bad.any():
            line = int(bad.argmax())
            raise DataFileError(path, f"{what} {frame[columns[what]].iloc[line]!r} is not valid", line + 2)
        order = np.argsort(minutes.to_numpy(), kind="stable")
        return HumanTrace(name, tuple(holes.to_numpy()[order]), minutes.to_numpy()[order], str(path))
    return HumanTrace(name, tuple(holes), None, str(path))


def _from_json(path: Path, name: str) -> HumanTrace:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataFileError(path, f"not valid JSON: {error.msg}", error.lineno) from None
    if isinstance(data, dict):
        name = str(data.get("name", name))
        holes, minutes = data.get("holes"), data.get("minutes")
        if not isinstance(holes, list):
            raise DataFileError(path, "expected an object with a 'holes' list")
        return _checked(path, name, holes, minutes)
    if isinstance(data, list) and all(isinstance(item, str) for item in data):
        return _checked(path, name, data, None)
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        frame = pd.DataFrame(data)
        return _from_table(path, frame, name)
    raise DataFileError(path, "expected a list of hole names, a list of {hole, minutes} objects, or "
                              "{name, holes, minutes}")


def _checked(path: Path, name: str, holes: list, minutes) -> HumanTrace:
    try:
        if minutes is not None:
            minutes = np.asarray(minutes, dtype=np.float64)
            order = np.argsort(minutes, kind="stable") if minutes.shape == (len(holes),) else None
            if order is not None:
                holes, minutes = [holes[i] for i in order], minutes[order]
        return HumanTrace(name, tuple(str(h) for h in holes), minutes, str(path))
    except (TypeError, ValueError) as error:
        raise DataFileError(path, str(error)) from None


def load_human_trace(path: str | os.PathLike, name: str | None = None) -> HumanTrace:
    """Read a trace in any of the formats in the module docstring; errors name the file and line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no trace file {path}")
    name = name or path.stem
    if path.suffix.lower() == ".json":
        return _from_json(path, name)
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise DataFileError(path, "empty trace file")
    first = [cell.strip().lower() for cell in lines[0].split(",")]
    if "hole" in first or "name" in first:
        return _from_table(path, pd.read_csv(path, skipinitialspace=True), name)
    if len(first) == 2:
        return _from_timestamps(path, name)
    if len(first) > 2:
        raise DataFileError(path, f"{len(first)} columns without a header naming a 'hole' column", 1)
    return HumanTrace(name, tuple(line.strip() for line in lines), None, str(path))


def real_clock(trace: HumanTrace, atlas: Atlas, threshold: float = 6.0,
               max_gap_minutes: float = 60.0) -> pd.DataFrame:
    """Good exposures against the operator's own clock: one row per exposure of a grid hole, in order.

    Columns: ``hole``, ``minutes`` (real time since the first exposure), ``active_minutes`` (the same with pauses
    longer than ``max_gap_minutes`` — breaks, refills, other work — cut to the session's median gap), ``ctf``,
    ``good`` (the first hole earns nothing, as in the environment) and ``good_cumulative``.
    """
    if trace.minutes is None:
        raise ValueError(f"trace {trace.name!r} has no times; it can only be replayed under a cost model")
    on_grid = trace.on(atlas)
    holes = on_grid["hole"].to_numpy()
    minutes = on_grid["minutes"].to_numpy()
    gaps = np.diff(minutes, prepend=0.0)
    typical = float(np.median(gaps[1:])) if len(gaps) > 1 else 0.0
    active = np.cumsum(np.where(gaps > max_gap_minutes, typical, gaps))
    good = atlas.is_good(threshold)[holes].copy()
    if len(good):
        good[0] = False
    return pd.DataFrame({"hole": holes, "minutes": minutes, "active_minutes": active,
                         "ctf": atlas.true_ctf[holes], "good": good, "good_cumulative": np.cumsum(good)})


def simulate_operator(atlas: Atlas, seed: int, costs: str | CollectionCosts = "aldolase-timestamps",
                      threshold: float = 6.0, name: str | None = None) -> HumanTrace:
    """A simulated systematic operator: a plausible human trace for a grid that has none.

    The operator judges holes by eye (the predicted CTFMaxRes plus personal noise of 1-3 Å), visits squares from
    the best-looking down (tile by tile), patches within a square from the best-looking down, skips patches that
    look mostly bad, and in a patch exposes the holes that look good enough (a personal tolerance of 0-4 Å above
    the threshold) in acquisition order. After the first five exposures of a square, a square with under a fifth
    good is abandoned. The clock advances by the cost of each move times a log-normal factor (σ = 0.3), with a
    break of 30-180 minutes after about one exposure in 400. Operators differ by ``seed``.
    """
    rng = np.random.default_rng(seed)
    costs = get_costs(costs).as_array()
    noise, tolerance = rng.uniform(1.0, 3.0), rng.uniform(0.0, 4.0)
    skip_below = rng.uniform(0.2, 0.5)
    seen = predicted_quality(atlas) + rng.normal(0.0, noise, len(atlas))
    looks_good = seen <= threshold + tolerance
    good = atlas.is_good(threshold)
    patch_share = np.bincount(atlas.patch, looks_good, atlas.n_patches) / np.bincount(atlas.patch,
                                                                                     minlength=atlas.n_patches)
    square_share = np.bincount(atlas.square, looks_good, atlas.n_squares) / np.bincount(atlas.square,
                                                                                       minlength=atlas.n_squares)
    tile_of_square = np.zeros(atlas.n_squares, np.int64)
    tile_of_square[atlas.square] = atlas.tile
    tile_share = np.bincount(tile_of_square, square_share, atlas.n_tiles)
    squares = np.lexsort((-square_share + rng.normal(0, 0.05, atlas.n_squares), -tile_share[tile_of_square]))
    square_rank = np.empty(atlas.n_squares, np.int64)
    square_rank[squares] = np.arange(atlas.n_squares)
    candidates = np.flatnonzero(looks_good & (patch_share[atlas.patch] >= skip_below))
    holes = candidates[np.lexsort((candidates, -patch_share[atlas.patch[candidates]],
                                   square_rank[atlas.square[candidates]]))]
    # the first five exposures of each square decide whether the operator stays there
    square = atlas.square[holes]
    counts = np.bincount(square, minlength=atlas.n_squares)
    ranked = counts[squares]                                  # holes of a square are contiguous, squares in rank order
    position = np.arange(len(holes)) - (np.cumsum(ranked) - ranked)[square_rank[square]]
    first = position < 5
    good_first = np.bincount(square, good[holes] & first, atlas.n_squares) / np.maximum(
        np.bincount(square, first, atlas.n_squares), 1)
    abandoned = (counts > 5) & (good_first < 0.2)
    holes = holes[first | ~abandoned[square]]
    if len(holes) == 0:                     # nothing looks good enough: the operator tries the best-looking patch
        holes = np.flatnonzero(atlas.patch == int(np.argmax(patch_share)))
    levels = switch_levels(atlas.tile, atlas.square, atlas.patch, holes[:-1], holes[1:])
    steps = costs[levels] * rng.lognormal(0.0, 0.3, len(levels))
    steps += np.where(rng.random(len(levels)) < 1 / 400, rng.uniform(30, 180, len(levels)), 0.0)
    minutes = np.concatenate([[0.0], np.cumsum(steps)])
    return HumanTrace(name or f"simulated operator {seed}", tuple(atlas.names[holes]), minutes,
                      f"simulated, seed {seed}")


def percentile_rank(value: float, population: Sequence[float]) -> float:
    """Percent of the population below ``value`` (ties count half): where ``value`` would rank among them."""
    population = np.asarray(population, dtype=np.float64)
    if population.size == 0:
        return float("nan")
    return float(100.0 * ((population < value).sum() + 0.5 * (population == value).sum()) / population.size)


def jaccard(a, b) -> float:
    """|a ∩ b| / |a ∪ b| of two collections of holes (1.0 for two empty ones)."""
    a, b = set(np.asarray(a).tolist()), set(np.asarray(b).tolist())
    return 1.0 if not a and not b else len(a & b) / len(a | b)
