"""``cryorl simulate``: a simulated session of a preset's grid shape (:func:`write_simulated_session`), written by
:func:`cryorl.images.synth_session.simulate_session`."""
from __future__ import annotations

import os

from cryorl.images.synth_session import simulate_session
from cryorl.synth import GridSpec

__all__ = ["session_spec", "write_simulated_session"]


def session_spec(preset: str | None = None, holes: int | None = None) -> GridSpec:
    """The grid of ``cryorl simulate``: an envs/ preset's shape (default: the real session's), scaled to ``holes``
    holes when given."""
    from cryorl.presets import load_preset

    grid = (load_preset(preset).get("grid") or {}) if preset else {}
    if holes is not None:                             # the preset's shape (if any) scaled to this many holes
        grid = {k: v for k, v in grid.items() if k not in ("n_patches", "n_squares", "n_tiles")}
        grid["n_holes"] = holes
    return GridSpec.from_mapping(grid)


def write_simulated_session(out: str | os.PathLike, seed: int = 0, *, preset: str | None = None,
                            holes: int | None = None, split: str = "all", crops: bool = False,
                            overwrite: bool = False, progress: bool = True) -> GridSpec:
    """``cryorl simulate``: :func:`simulate_session` of :func:`session_spec`'s grid into the folder ``out``
    (replaced as a whole only with ``overwrite``); returns the grid's spec."""
    from cryorl.outputs import output_folder

    spec = session_spec(preset, holes)
    with output_folder(out, overwrite=overwrite, what="simulated session") as folder:
        simulate_session(folder, seed, spec, crops=crops, split=split, progress=progress)
    return spec
