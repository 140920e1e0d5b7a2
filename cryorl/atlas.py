"""The Atlas: one grid survey as an immutable struct-of-arrays over holes.

A hole belongs to one patch (a hole-magnification image of ~20 holes), which belongs to one square, which belongs
to one atlas tile. Ids are integers into :attr:`Atlas.tile_names`, :attr:`Atlas.square_names` and
:attr:`Atlas.patch_names`; they are global (a square id is unique across tiles), so comparing ids answers "same
square?" directly.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cryorl.fileio import atomic_path
from cryorl.outputs import clip

__all__ = ["Atlas", "AtlasError", "FIT_FAILURE_CTF", "MAX_FEATURE_CTF", "clip_ctf"]

FIT_FAILURE_CTF = 100.0
"""CTFMaxRes values at or above this (Å) are CTF-fit failures (the CryoRL files use the 100000 sentinel)."""
MAX_FEATURE_CTF = 20.0
"""CTFMaxRes is clipped at this value (Å) wherever it is used as a feature, as in the CryoRL papers."""


def clip_ctf(values, missing: float = MAX_FEATURE_CTF) -> np.ndarray:
    """CTFMaxRes as features, scores and pictures use it: in [0, 20] Å (a failed fit, ≥ 100 Å, counts as 20 Å),
    unknown values (NaN) as ``missing``. The one home of the papers' 20 Å cap."""
    return np.clip(np.nan_to_num(np.asarray(values, np.float64), nan=missing), 0.0, MAX_FEATURE_CTF)


class AtlasError(ValueError):
    """An Atlas's arrays are inconsistent; the message names the offending hole."""


def _frozen(values: Iterable, dtype) -> np.ndarray:
    array = np.array(values, dtype=dtype)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False, repr=False)
class Atlas:
    """A grid survey: every hole with its place in the hierarchy, position and CTFMaxRes.

    Attributes:
        names: exposure/hole names (unique), in the atlas's hole order; actions in the environment index this order.
        tile, square, patch: integer ids of each hole's atlas tile, square and patch.
        x, y: hole position within its patch image, in ``position_unit`` (pixels from the patch centre for
            CryoRL/Leginon data, µm for simulated grids).
        true_ctf: measured CTFMaxRes in Å (NaN where never measured; ≥ 100 Å marks a failed CTF fit).
        predicted_ctf: predicted CTFMaxRes in Å from a hole-image model (NaN everywhere when the predictions are
            classifier probabilities only).
        predicted_good: predicted probability that CTFMaxRes < 6 Å (the CryoRL classifier format), or None.
        ctf_confidence: the CTF fit's confidence (a correlation score, mostly 0-1) where known, else None.
        tile_names, square_names, patch_names: names of the hierarchy levels, indexed by id.
        position_unit: unit of ``x`` and ``y``.
        source: where the atlas came from (a path or a simulator description).
    """

    names: np.ndarray
    tile: np.ndarray
    square: np.ndarray
    patch: np.ndarray
    x: np.ndarray
    y: np.ndarray
    true_ctf: np.ndarray
    predicted_ctf: np.ndarray
    tile_names: tuple[str, ...]
    square_names: tuple[str, ...]
    patch_names: tuple[str, ...]
    predicted_good: np.ndarray | None = None
    ctf_confidence: np.ndarray | None = None
    position_unit: str = "px"
    source: str = ""
    _index: dict = field(init=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.names)
        set_ = object.__setattr__
        set_(self, "names", _frozen(self.names, object))
        for key, dtype in (("tile", np.int64), ("square", np.int64), ("patch", np.int64),
                           ("x", np.float64), ("y", np.float64), ("true_ctf", np.float64),
                           ("predicted_ctf", np.float64)):
            set_(self, key, _frozen(getattr(self, key), dtype))
        for key in ("predicted_good", "ctf_confidence"):
            if getattr(self, key) is not None:
                set_(self, key, _frozen(getattr(self, key), np.float64))
        for key in ("tile_names", "square_names", "patch_names"):
            set_(self, key, tuple(str(v) for v in getattr(self, key)))
        self._validate(n)
        set_(self, "_index", {name: i for i, name in enumerate(self.names)})

    # ----------------------------------------------------------------------------------------------- validation
    def _hole(self, i: int) -> str:
        return f"hole {i} ({self.names[i]!r})"

    def _validate(self, n: int) -> None:
        if n == 0:
            raise AtlasError("an Atlas needs at least one hole")
        arrays = {"tile": self.tile, "square": self.square, "patch": self.patch, "x": self.x, "y": self.y,
                  "true_ctf": self.true_ctf, "predicted_ctf": self.predicted_ctf}
        if self.predicted_good is not None:
            arrays["predicted_good"] = self.predicted_good
        if self.ctf_confidence is not None:
            arrays["ctf_confidence"] = self.ctf_confidence
        for key, array in arrays.items():
            if array.shape != (n,):
                raise AtlasError(f"{key} has shape {array.shape}; expected ({n},), one value per hole")
        for key, names in (("tile", self.tile_names), ("square", self.square_names), ("patch", self.patch_names)):
            ids = arrays[key]
            bad = np.flatnonzero((ids < 0) | (ids >= len(names)))
            if bad.size:
                raise AtlasError(f"{self._hole(bad[0])}: {key} id {ids[bad[0]]} is outside 0..{len(names) - 1}")
            if len(set(names)) != len(names):
                raise AtlasError(f"duplicate {key} names: {_first_duplicate(names)!r}")
        _check_nested(self, self.square, self.tile, "square", "tile")
        _check_nested(self, self.patch, self.square, "patch", "square")
        if len(set(self.names)) != n:
            dup = _first_duplicate(self.names)
            rows = np.flatnonzero(self.names == dup)
            raise AtlasError(f"duplicate hole name {dup!r} at holes {rows.tolist()}")
        has_ctf = np.isfinite(self.predicted_ctf)
        if self.predicted_good is None:
            if not has_ctf.all():
                i = int(np.flatnonzero(~has_ctf)[0])
                raise AtlasError(f"{self._hole(i)}: predicted CTFMaxRes is {self.predicted_ctf[i]}; every hole needs "
                                 "a finite prediction (drop the hole, or fill it explicitly)")
        else:
            good = self.predicted_good
            bad = np.flatnonzero(~np.isfinite(good) | (good < 0) | (good > 1))
            if bad.size:
                raise AtlasError(f"{self._hole(bad[0])}: predicted probability of CTF < 6 Å is {good[bad[0]]}; "
                                 "expected a number in [0, 1]")
            if has_ctf.any() and not has_ctf.all():
                i = int(np.flatnonzero(~has_ctf)[0])
                raise AtlasError(f"{self._hole(i)}: predicted CTFMaxRes is missing while other holes have one")
        bad = np.flatnonzero(self.true_ctf < 0)
        if bad.size:
            raise AtlasError(f"{self._hole(bad[0])}: true CTFMaxRes {self.true_ctf[bad[0]]} Å is negative")
        bad = np.flatnonzero(~np.isfinite(self.x) | ~np.isfinite(self.y))
        if bad.size:
            raise AtlasError(f"{self._hole(bad[0])}: position is not finite")

    # -------------------------------------------------------------------------------------------------- basics
    def __len__(self) -> int:
        return len(self.names)

    @property
    def n_tiles(self) -> int:
        return len(self.tile_names)

    @property
    def n_squares(self) -> int:
        return len(self.square_names)

    @property
    def n_patches(self) -> int:
        return len(self.patch_names)

    @property
    def has_ctf_predictions(self) -> bool:
        """True when :attr:`predicted_ctf` holds values (False for classifier-probability predictions only)."""
        return bool(np.isfinite(self.predicted_ctf).all())

    @property
    def ctf_fit_failed(self) -> np.ndarray:
        """Holes whose CTF fit failed (true CTFMaxRes ≥ 100 Å); they count as bad exposures."""
        return np.nan_to_num(self.true_ctf, nan=0.0) >= FIT_FAILURE_CTF

    def index(self, name: str) -> int:
        """The hole order index of a hole name; KeyError names the hole when absent."""
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise KeyError(f"no hole named {clip(repr(name))} in this atlas ({len(self)} holes from "
                           f"{self.source or 'memory'})") from None

    def hole_index(self, hole: str | int, what: str = "hole") -> int:
        """The hole order index of ``hole``: a hole name, or an index into the hole order (an integer, or its
        digits as text where no hole has that name). One ValueError, naming ``what`` and the value (cut to 200
        characters), for anything else."""
        if isinstance(hole, str):
            if hole in self._index:
                return self._index[hole]
            digits = hole.strip()
            if not (digits.isascii() and digits.isdigit()):
                raise ValueError(f"unknown {what} {clip(repr(hole))}: no hole of that name in "
                                 f"{self.source or 'this grid'} ({len(self)} holes)")
            hole = int(digits)
        elif isinstance(hole, (bool, np.bool_)) or not isinstance(hole, (int, np.integer)):
            raise ValueError(f"{what} must be a hole name or an index into the hole order, not "
                             f"{clip(repr(hole))}")
        index = int(hole)
        if not 0 <= index < len(self):
            raise ValueError(f"{what} index {index} is outside the grid's {len(self)} holes (0..{len(self) - 1})")
        return index

    def is_good(self, threshold: float = 6.0) -> np.ndarray:
        """Holes whose measured CTFMaxRes is ≤ ``threshold`` Å (unmeasured holes are not good)."""
        return np.nan_to_num(self.true_ctf, nan=np.inf) <= threshold

    def holes_per_patch(self) -> np.ndarray:
        return np.bincount(self.patch, minlength=self.n_patches)

    def __repr__(self) -> str:
        measured = np.isfinite(self.true_ctf)
        good = self.is_good().sum()
        pred = "CTFMaxRes" if self.has_ctf_predictions else "P(CTF<6Å)"
        return (f"Atlas({len(self)} holes in {self.n_patches} patches, {self.n_squares} squares, {self.n_tiles} tiles; "
                f"{measured.sum()} measured, {good} ≤ 6 Å; predictions: {pred}; source={self.source!r})")

    # ------------------------------------------------------------------------------------------- transformation
    def subset(self, holes: np.ndarray | Iterable[int], source: str | None = None) -> Atlas:
        """A new Atlas with only ``holes`` (indices or a boolean mask), keeping order; unused levels are dropped."""
        holes = np.asarray(holes)
        if holes.dtype == bool:
            holes = np.flatnonzero(holes)
        frame = self.to_frame().iloc[holes]
        return Atlas.from_frame(frame, position_unit=self.position_unit,
                                source=source if source is not None else f"{self.source} (subset)")

    def with_predictions(self, predicted_ctf: np.ndarray | None = None,
                         predicted_good: np.ndarray | None = None) -> Atlas:
        """A copy with new predictions (e.g. from a perception model run on the hole images)."""
        from dataclasses import replace

        n = len(self)
        return replace(self,
                       predicted_ctf=np.full(n, np.nan) if predicted_ctf is None else predicted_ctf,
                       predicted_good=predicted_good)

    def to_frame(self) -> pd.DataFrame:
        """A tidy table, one row per hole, with hierarchy names (not ids) so that it stands on its own."""
        frame = pd.DataFrame({
            "hole": self.names.astype(str),
            "tile": np.asarray(self.tile_names, dtype=object)[self.tile],
            "square": np.asarray(self.square_names, dtype=object)[self.square],
            "patch": np.asarray(self.patch_names, dtype=object)[self.patch],
            "x": self.x, "y": self.y,
            "true_ctf": self.true_ctf, "predicted_ctf": self.predicted_ctf,
        })
        if self.predicted_good is not None:
            frame["predicted_good"] = self.predicted_good
        if self.ctf_confidence is not None:
            frame["ctf_confidence"] = self.ctf_confidence
        return frame

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, position_unit: str = "px", source: str = "") -> Atlas:
        """Build from a table with columns ``hole, tile, square, patch, x, y, true_ctf, predicted_ctf`` (and optional
        ``predicted_good``, ``ctf_confidence``). Hierarchy levels are named by strings; ids follow first appearance."""
        required = ["hole", "tile", "square", "patch", "x", "y", "true_ctf", "predicted_ctf"]
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise AtlasError(f"hole table from {source or 'memory'} lacks columns {missing}; "
                             f"it has {list(frame.columns)}")
        tile, tile_names = pd.factorize(frame["tile"].astype(str))
        square, square_names = pd.factorize(frame["square"].astype(str))
        patch, patch_names = pd.factorize(frame["patch"].astype(str))
        optional = {c: frame[c].to_numpy(np.float64) for c in ("predicted_good", "ctf_confidence") if c in frame}
        return cls(names=frame["hole"].astype(str).to_numpy(), tile=tile, square=square, patch=patch,
                   x=frame["x"].to_numpy(np.float64), y=frame["y"].to_numpy(np.float64),
                   true_ctf=frame["true_ctf"].to_numpy(np.float64),
                   predicted_ctf=frame["predicted_ctf"].to_numpy(np.float64),
                   tile_names=tuple(tile_names), square_names=tuple(square_names), patch_names=tuple(patch_names),
                   position_unit=position_unit, source=source, **optional)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the hole table as CSV or Parquet (by suffix), atomically. The position unit travels in the file:
        in the position columns' names in CSV (``x_um, y_um`` or ``x_px, y_px``: plain ``pandas.read_csv`` reads
        it), in the schema metadata in Parquet."""
        path = Path(path)
        frame = self.to_frame()
        with atomic_path(path) as tmp:
            if path.suffix == ".parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pandas(frame, preserve_index=False)
                table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                                       b"cryorl.position_unit": self.position_unit.encode()})
                pq.write_table(table, tmp)
            else:
                unit = self.position_unit
                frame.rename(columns={"x": f"x_{unit}", "y": f"y_{unit}"}).to_csv(tmp, index=False)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Atlas:
        """Read a hole table written by :meth:`save` (CSV or Parquet)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no hole table at {path}")
        unit = "px"
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            unit = (table.schema.metadata or {}).get(b"cryorl.position_unit", b"px").decode()
            frame = table.to_pandas()
        else:
            with open(path) as handle:
                first = handle.readline()
            if first.startswith("# position_unit="):            # written by cryorl 0.1.0 before the unit moved
                unit = first.strip().split("=", 1)[1]
            frame = pd.read_csv(path, comment="#", dtype={"hole": str, "tile": str, "square": str, "patch": str})
            named = [c[2:] for c in frame.columns if c.startswith("x_") and f"y_{c[2:]}" in frame.columns]
            if "x" not in frame.columns and len(named) == 1:
                unit = named[0]
                frame = frame.rename(columns={f"x_{unit}": "x", f"y_{unit}": "y"})
        return cls.from_frame(frame, position_unit=unit, source=str(path))


def _first_duplicate(values) -> object:
    seen = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


def _check_nested(atlas: Atlas, child: np.ndarray, parent: np.ndarray, child_name: str, parent_name: str) -> None:
    """Every child group (e.g. a patch) must sit in exactly one parent group (e.g. a square)."""
    n_child = int(child.max()) + 1
    first_hole = np.full(n_child, len(child), dtype=np.int64)
    np.minimum.at(first_hole, child, np.arange(len(child)))
    bad = np.flatnonzero(parent[first_hole[child]] != parent)
    if bad.size:
        i = int(bad[0])
        j = int(first_hole[child[i]])
        names = getattr(atlas, f"{child_name}_names")
        parents = getattr(atlas, f"{parent_name}_names")
        raise AtlasError(f"{atlas._hole(i)}: {child_name} {names[child[i]]!r} appears in more than one {parent_name} "
                         f"({parents[parent[j]]!r} at hole {j}, {parents[parent[i]]!r} here)")
