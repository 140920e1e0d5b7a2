"""The data-format registry and the grid a format returns (see :mod:`cryorl.formats`)."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryorl.atlas import Atlas
from cryorl.human import HumanTrace

__all__ = ["Grid", "GridFormat", "register_format", "load_grid", "open_grid", "find_format", "grid_formats",
           "choose_split"]


@dataclass(frozen=True, eq=False)
class Grid:
    """A grid as opened from disk: the hole table and what else the folder holds.

    Attributes:
        atlas: the holes (see :class:`cryorl.Atlas`).
        path: what was opened.
        format: the format's name (``cryorl``, ``hole table``, ``epu``, ...).
        split: the split read, or None for a format without splits.
        trace: the operator's collection order and clock: a :class:`cryorl.HumanTrace`, or a file
            :func:`cryorl.load_human_trace` reads (see :meth:`human_trace`), or None.
        stage: stage x, y (µm) of every hole in atlas order, or None where unknown.
        crops: the folder of hole crops, or None.
        notes: one line per thing skipped or missing, for the user.
        extra: format-specific tables (e.g. an EPU session's foil holes and exposures).
    """

    atlas: Atlas
    path: Path
    format: str
    split: str | None = None
    trace: Path | HumanTrace | None = None
    stage: tuple[np.ndarray, np.ndarray] | None = None
    crops: Path | None = None
    notes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def human_trace(self, name: str = "human operator") -> HumanTrace | None:
        """The operator's trace as a :class:`cryorl.HumanTrace` named ``name`` (None where there is none)."""
        from dataclasses import replace

        from cryorl.human import load_human_trace

        if self.trace is None:
            return None
        if isinstance(self.trace, HumanTrace):
            return replace(self.trace, name=name)
        return load_human_trace(self.trace, name=name)

    def measured(self) -> Grid:
        """The grid restricted to its measured holes (a finite CTFMaxRes): the holes whose outcome an evaluation
        can score. The same grid where every hole is measured."""
        keep = np.isfinite(self.atlas.true_ctf)
        if keep.all():
            return self
        if not keep.any():
            raise ValueError(f"{self.path}: no hole has a measured CTFMaxRes, so no agent can be scored on it (give "
                             "the CTF results, e.g. --ctf micrographs_ctf.star)")
        from dataclasses import replace

        stage = None if self.stage is None else (self.stage[0][keep], self.stage[1][keep])
        note = (f"evaluated on the {int(keep.sum())} measured holes of {len(keep)} (the others have no CTFMaxRes, "
                "so their outcome is unknown)")
        return replace(self, atlas=self.atlas.subset(keep), stage=stage, notes=(*self.notes, note))

    @property
    def label(self) -> str:
        """A short name for reports: the folder and the split."""
        return f"{self.path.name} ({self.split} split)" if self.split else self.path.name


@dataclass(frozen=True)
class GridFormat:
    """A registered data format (see the module docstring)."""
    name: str
    description: str
    detect: Callable[[Path], bool]
    splits: Callable[[Path], list[str]]
    load: Callable[..., Grid]
    options: tuple[str, ...] = ()


_FORMATS: list[GridFormat] = []


def register_format(fmt: GridFormat) -> GridFormat:
    """Add a format; the name must be new."""
    if any(f.name == fmt.name for f in _FORMATS):
        raise ValueError(f"a data format named {fmt.name!r} is registered already")
    _FORMATS.append(fmt)
    return fmt


def grid_formats() -> tuple[GridFormat, ...]:
    """Every registered format, in the order they are tried."""
    return tuple(_FORMATS)


def find_format(path: str | os.PathLike) -> GridFormat:
    """The format of what is at ``path``; a one-line error says what was expected where nothing fits."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no data at {path}; fetch the public data with `cryorl data download aldolase` "
                                f"(into {_cache_hint()}) or give the folder it is in")
    for fmt in _FORMATS:
        if fmt.detect(path):
            return fmt
    known = "; ".join(f"{f.name}: {f.description}" for f in _FORMATS)
    raise ValueError(f"{path} is not a grid cryorl can read (expected {known})")


def choose_split(path: Path, split: str | None, present: list[str]) -> str | None:
    """``split`` if present; the only split when None; a one-line error listing them otherwise."""
    if not present:
        if split is not None:
            raise ValueError(f"{path} has no splits; drop --split {split}")
        return None
    if split is None:
        if len(present) == 1:
            return present[0]
        raise ValueError(f"{path} holds the splits {', '.join(present)}: name one with --split (split=...)")
    if split not in present:
        raise FileNotFoundError(f"no {split!r} split in {path}; it holds {', '.join(present)}")
    return split


def load_grid(path: str | os.PathLike, split: str | None = None, **options) -> Grid:
    """Open the grid at ``path`` — a CryoRL folder of either release, a ``cryorl simulate`` session, a hole table
    (``.csv``/``.parquet``), an EPU session — and return it as a :class:`Grid`.

    ``split`` picks one of a folder's splits; None takes the only one (several: a one-line error listing them).
    ``options`` go to the format (e.g. ``era=``, ``predictions=``, ``missing_prediction=`` for CryoRL folders,
    ``ctf=`` for EPU sessions); None values are ignored, and an option the format does not take is an error.
    """
    path = Path(path).expanduser()
    fmt = find_format(path)
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(fmt.options))
    if unknown:
        takes = ", ".join(fmt.options) or "none"
        raise ValueError(f"{path} is a {fmt.name} grid, which takes no {', '.join(unknown)} option (it takes: "
                         f"{takes})")
    chosen = choose_split(path, split, fmt.splits(path))
    return fmt.load(path, chosen, **options)


def open_grid(path: str | os.PathLike, split: str | None = None, *, measured: bool = False, **options) -> Grid:
    """:func:`load_grid`, restricted to its measured holes when ``measured`` (for scoring agents), with each of its
    notes on stderr as ``cryorl: NOTE`` (what the commands that take ``--data`` do)."""
    grid = load_grid(path, split, **options)
    grid = grid.measured() if measured else grid
    for note in grid.notes:
        print(f"cryorl: {note}", file=sys.stderr)
    return grid


def _cache_hint() -> str:
    from cryorl.download import default_dest

    return str(default_dest())

