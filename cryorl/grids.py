"""Where the environment's grid comes from: one object with one job, "the atlas for this reset".

- :class:`FixedGrid` — a given atlas (a real session, a saved table), optionally with predictions made by a
  perception model on its hole crops; every reset uses it.
- :class:`SimulatedGrid` — the simulator (:mod:`cryorl.synth`): a fixed seed gives one grid for good; without one,
  a grid is drawn by the environment's generator at the first reset and at every seeded reset, or at every reset
  with ``resample``; a perception model predicts from rendered crops, ``transform`` post-processes each grid
  (e.g. :func:`cryorl.quality.as_classifier`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from cryorl.atlas import Atlas
from cryorl.synth import GridSpec, simulate_atlas

__all__ = ["GridSource", "FixedGrid", "SimulatedGrid", "load_perception"]


class GridSource(Protocol):
    """What the environment asks of its grid."""

    def first(self) -> Atlas:
        """The atlas the environment starts with (its spaces are sized on it)."""

    def for_reset(self, rng: np.random.Generator, seeded: bool) -> Atlas | None:
        """The atlas for a reset (``seeded``: the reset was given a seed), or None to keep the current one."""


def load_perception(perception):
    """A perception model: an object with ``predict(crops)``, or the path of a saved predictor."""
    if perception is None or hasattr(perception, "predict"):
        return perception
    from cryorl.perception.predictor import HoleQualityPredictor

    return HoleQualityPredictor.load(perception)


class FixedGrid:
    """A given atlas, the same at every reset; with ``perception``, its predictions come from the model run on
    ``crops`` (one image per hole)."""

    def __init__(self, atlas: Atlas, perception=None, crops: np.ndarray | None = None) -> None:
        if perception is not None:
            if crops is None or len(crops) != len(atlas):
                raise ValueError(f"perception on a given atlas needs crops=, one image per hole ({len(atlas)}), "
                                 f"got {'none' if crops is None else len(crops)}")
            atlas = atlas.with_predictions(load_perception(perception).predict(crops))
        self.atlas = atlas

    def first(self) -> Atlas:
        return self.atlas

    def for_reset(self, rng: np.random.Generator, seeded: bool) -> Atlas | None:
        return None


class SimulatedGrid:
    """Simulated grids of ``spec`` (see the module docstring)."""

    def __init__(self, spec: GridSpec, seed: int | None = None, resample: bool = False, perception=None,
                 transform: Callable[[Atlas], Atlas] | None = None) -> None:
        if resample and seed is not None:
            raise ValueError("resample_grid needs a simulated grid without grid_seed")
        self.spec, self.seed, self.resample = spec, seed, resample
        self.perception = load_perception(perception)
        self.transform = transform
        self._drawn = False

    def _simulate(self, seed: int | np.random.Generator) -> Atlas:
        if self.perception is None:
            atlas = simulate_atlas(seed, self.spec)
        else:
            from cryorl.perception.crops import crops_for_table
            from cryorl.synth import simulate_hole_table

            rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
            table = simulate_hole_table(rng, self.spec)
            atlas = Atlas.from_frame(table, position_unit="um", source=f"cryorl.synth with {self.perception.name}")
            atlas = atlas.with_predictions(self.perception.predict(crops_for_table(table, rng)))
        return self.transform(atlas) if self.transform is not None else atlas

    def first(self) -> Atlas:
        return self._simulate(self.seed if self.seed is not None else 0)

    def for_reset(self, rng: np.random.Generator, seeded: bool) -> Atlas | None:
        if self.seed is not None or (self._drawn and not seeded and not self.resample):
            return None
        self._drawn = True
        return self._simulate(rng)
