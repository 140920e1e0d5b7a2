"""One way to open a grid: :func:`load_grid` decides by what is at the path.

Each format is one module of this package that calls :func:`register_format` with three functions: ``detect(path)``
(is this mine?), ``splits(path)`` (the splits there, or ``[]`` for a format without splits) and ``load(path, split,
**options)`` returning a :class:`Grid`. Formats are tried in registration order; adding one is adding a module
(and its import in this file).
"""
from __future__ import annotations

from cryorl.formats import cryorl_folder, epu, hole_table  # noqa: F401  (registration, in the order tried)
from cryorl.formats.base import (
    Grid,
    GridFormat,
    choose_split,
    find_format,
    grid_formats,
    load_grid,
    open_grid,
    register_format,
)

__all__ = ["Grid", "GridFormat", "register_format", "load_grid", "open_grid", "find_format", "grid_formats",
           "choose_split"]
