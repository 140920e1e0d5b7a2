"""The compact observation's schema: every key declared once — name, per-hole or global, dtype, bounds, unit,
meaning, and how it changes within an episode.

Built from it: the environment's and the vector environment's observation spaces (:func:`observation_space`), the
policy network's batching (:func:`batch_rank`), the imitation buffers (:mod:`cryorl.agents.imitation`) and the
observation keys a saved policy records (:mod:`cryorl.agents.learned`). :data:`COMPACT_SCHEMA` is what
:class:`~cryorl.env.CryoEMEnv` observes (``feature_set="compact"``); :data:`SIGNAL_SCHEMA` is what
:class:`~cryorl.agents.signals.PlannerSignals` adds for the learned agents; :data:`LEARNER_SCHEMA` is both.

Adding a feature: declare its :class:`ObservationKey` here, produce its values in
:meth:`cryorl.features.CompactFeatures.observe` (or the signal source) and read it in a feature block of
:func:`cryorl.agents.network.hole_features`; spaces, batching, imitation buffers and the policy format follow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from gymnasium import spaces

from cryorl.atlas import MAX_FEATURE_CTF

__all__ = ["ObservationKey", "COMPACT_SCHEMA", "SIGNAL_SCHEMA", "LEARNER_SCHEMA", "HOLE_INDEX", "MAX_MINUTES",
           "observation_space", "batch_rank", "key_names", "describe_difference"]

MAX_MINUTES = 1e5
"""Upper bound of minute-valued observations (about 69 days of microscope time)."""
HOLE_INDEX = "hole index"
"""An upper bound meaning "an index of a hole row": ``max(max_holes - 1, 1)`` (ids of patches, squares, tiles)."""

Changes = Literal["episode", "step", "one_hot", "exposed", "unvisited"]


@dataclass(frozen=True)
class ObservationKey:
    """One key of the observation dict.

    Attributes:
        name: the key.
        per_hole: one row per hole (padded to ``max_holes``) before ``trailing``; else a global array of shape
            ``trailing``.
        trailing: the shape after the hole axis (per-hole keys) or the whole shape (global keys).
        dtype: numpy dtype of the array.
        low, high: bounds of every value (``high`` may be :data:`HOLE_INDEX`).
        unit: physical unit ("" when none).
        changes: how it changes within an episode — ``"episode"`` fixed (the grid, the settings), ``"step"`` any
            value each step, ``"one_hot"`` a single 1 among the hole rows each step, ``"exposed"`` fixed per hole but
            0 until the hole is visited, ``"unvisited"`` 1 on the real holes not yet visited.
        meaning: what a value says.
    """

    name: str
    per_hole: bool
    trailing: tuple[int, ...]
    dtype: type
    low: float
    high: float | str
    unit: str
    changes: Changes
    meaning: str

    def shape(self, max_holes: int) -> tuple[int, ...]:
        """The array's shape in an environment of ``max_holes`` hole rows."""
        return (max_holes, *self.trailing) if self.per_hole else self.trailing

    def bounds(self, max_holes: int) -> tuple[float, float]:
        high = max(max_holes - 1, 1) if self.high == HOLE_INDEX else self.high
        return self.low, high

    def space(self, max_holes: int) -> spaces.Box:
        low, high = self.bounds(max_holes)
        return spaces.Box(low, high, self.shape(max_holes), self.dtype)


COMPACT_SCHEMA: tuple[ObservationKey, ...] = (
    # name, per_hole, trailing, dtype, low, high, unit, changes,
    #     meaning
    ObservationKey("predicted_ctf", True, (), np.float32, 0.0, MAX_FEATURE_CTF, "Å", "episode",
                   "predicted CTFMaxRes, clipped at 20 Å; with classifier predictions the CTFMaxRes-equivalent of the "
                   "probability (cryorl.quality)"),
    ObservationKey("predicted_good", True, (), np.float32, 0.0, 1.0, "", "episode",
                   "calibrated probability that CTFMaxRes ≤ threshold (a classifier's own probability, a regressor's "
                   "CTFMaxRes through cryorl.calibration.default_calibration)"),
    ObservationKey("measured_ctf", True, (), np.float32, 0.0, MAX_FEATURE_CTF, "Å", "exposed",
                   "measured CTFMaxRes of an exposed hole, clipped at 20 Å; 0 until the hole is exposed"),
    ObservationKey("hierarchy", True, (3,), np.int32, 0, HOLE_INDEX, "", "episode",
                   "the hole's atlas tile, square and patch ids"),
    ObservationKey("is_hole", True, (), np.int8, 0, 1, "", "episode",
                   "1 on a real hole, 0 on a padded row"),
    ObservationKey("visited", True, (), np.int8, 0, 1, "", "step",
                   "1 once the hole has been visited (the start included)"),
    ObservationKey("current", True, (), np.int8, 0, 1, "", "one_hot",
                   "1 on the hole the microscope is at"),
    ObservationKey("time_left", False, (1,), np.float32, 0.0, MAX_MINUTES, "minutes", "step",
                   "minutes left in the budget"),
    ObservationKey("costs", False, (4,), np.float32, 0.0, MAX_MINUTES, "minutes", "episode",
                   "minutes of a move at each switch level: hole, patch, square, tile"),
    ObservationKey("threshold", False, (1,), np.float32, 0.0, 100.0, "Å", "episode",
                   "the good CTFMaxRes threshold (inclusive)"),
    ObservationKey("action_mask", True, (), np.int8, 0, 1, "", "unvisited",
                   "1 on the holes a step may expose"),
)
"""The compact observation of :class:`~cryorl.env.CryoEMEnv`, in observation order."""

SIGNAL_SCHEMA: tuple[ObservationKey, ...] = (
    ObservationKey("planner_pick", True, (), np.int8, 0, 1, "", "one_hot",
                   "1 on the hole the budget-aware planner exposes next"),
    ObservationKey("planner_plan", True, (), np.int8, 0, 1, "", "step",
                   "1 on every hole the planner's plan for the time left takes"),
    ObservationKey("planner_price", False, (1,), np.float32, 0.0, 1.0, "", "step",
                   "the price of a hole move under the plan (expected good exposures a hole must promise to be "
                   "worth its minute; 1 on the last move)"),
)
"""The planner's signals :class:`~cryorl.agents.signals.PlannerSignals` adds for the learned agents."""

LEARNER_SCHEMA: tuple[ObservationKey, ...] = COMPACT_SCHEMA + SIGNAL_SCHEMA
"""What the learned agents read: the compact observation and the planner's signals."""


def key_names(schema: tuple[ObservationKey, ...]) -> tuple[str, ...]:
    return tuple(key.name for key in schema)


def observation_space(schema: tuple[ObservationKey, ...], max_holes: int) -> spaces.Dict:
    """The Gymnasium space of ``schema``'s observation with ``max_holes`` hole rows (keys in schema order)."""
    return spaces.Dict({key.name: key.space(max_holes) for key in schema})


def batch_rank(schema: tuple[ObservationKey, ...]) -> dict[str, int]:
    """The rank of each key's unbatched array (a batch of observations adds one dimension in front)."""
    return {key.name: int(key.per_hole) + len(key.trailing) for key in schema}


def describe_difference(expected, actual) -> str:
    """"lacks a, b and has extra c" between two collections of names ("" when they hold the same names)."""
    lacks = [name for name in expected if name not in set(actual)]
    extra = [name for name in actual if name not in set(expected)]
    parts = ([f"lacks {', '.join(lacks)}"] if lacks else []) + ([f"has extra {', '.join(extra)}"] if extra else [])
    return " and ".join(parts)
