"""Observation feature sets of :class:`cryorl.env.CryoEMEnv`.

Every feature set observes the same episode state (visited holes, current hole, minutes left) and returns a
``dict`` observation whose arrays have one row per hole, padded to ``max_holes`` rows, plus ``action_mask``.
Updates are incremental: a step changes the statistics of one patch, one square and one tile, so a step costs
O(holes) numpy work (one gather) and no Python loop over holes.

``compact`` (default)
    Raw per-hole facts; hierarchical statistics are left to the policy network (gather/scatter by id in torch),
    which keeps replay buffers small (≈ 28 bytes per hole). Every key is declared once, with its dtype, bounds,
    unit and meaning, in :data:`cryorl.observation.COMPACT_SCHEMA`; the observation space is built from it. Keys:
    ``predicted_ctf`` (Å, clipped at 20; with classifier predictions the CTFMaxRes-equivalent of the probability,
    :mod:`cryorl.quality`), ``predicted_good`` (the calibrated probability that CTFMaxRes ≤ threshold),
    ``measured_ctf`` (Å, clipped at 20; 0 until the hole is exposed: a microscope knows the CTFMaxRes of every
    exposure it has taken), ``hierarchy`` (tile, square, patch ids), ``is_hole`` (0 on padded rows), ``visited``,
    ``current`` (one-hot), ``time_left`` (minutes), ``costs`` (minutes per hole/patch/square/tile switch),
    ``threshold`` (Å), ``action_mask``.
``cryorl``
    The CryoRL papers' matrix: 32 features per hole for each of the last 4 steps (128 columns, oldest first) —
    hole: predicted CTF/20 (clipped at 20 Å) and visited flag; for the hole's patch, square and tile: a normalised
    histogram (bins [0,4,6,8,10,∞) Å) of the unvisited holes' predicted CTF and four counts (unvisited, unvisited
    ≤ threshold, visited, visited ≤ threshold, by *predicted* CTF) divided by 25 / 150 / 500 and capped at 1; then
    same tile, same square and same patch as the current hole. With classifier predictions (probability of
    CTF < 6 Å) it is the papers' 17-feature variant: the probability replaces the CTF value, the histograms are
    dropped, "unvisited ≤ threshold" is the sum of probabilities and "visited ≤ threshold" uses measured CTF.
    As in the reference, only holes predicted ≤ 20 Å count as unvisited in the 32-feature statistics.
"""
from __future__ import annotations

from collections import deque

import numpy as np
from gymnasium import spaces

from cryorl.atlas import MAX_FEATURE_CTF, Atlas, clip_ctf
from cryorl.calibration import default_calibration
from cryorl.observation import COMPACT_SCHEMA, MAX_MINUTES, observation_space
from cryorl.quality import predicted_quality

__all__ = ["FEATURE_SETS", "make_feature_set", "CompactFeatures", "CryoRLFeatures", "HISTOGRAM_EDGES",
           "GROUP_CAPS"]

HISTOGRAM_EDGES = np.array([0.0, 4.0, 6.0, 8.0, 10.0, 999999.0])
GROUP_CAPS = (25.0, 150.0, 500.0)
"""Count normalisers of the CryoRL features for a patch, a square and an atlas tile."""


class _FeatureSet:
    """Shared shape: the atlas's static arrays, padding and the action mask."""

    name = ""

    def __init__(self, atlas: Atlas, max_holes: int, threshold: float, costs: np.ndarray) -> None:
        self.atlas = atlas
        self.n = len(atlas)
        self.max_holes = max_holes
        self.threshold = threshold
        self.costs = np.asarray(costs, dtype=np.float32)
        self.ids = np.stack([atlas.tile, atlas.square, atlas.patch], axis=1)  # (n, 3): tile, square, patch

    def _mask(self, visited: np.ndarray) -> np.ndarray:
        mask = np.zeros(self.max_holes, dtype=np.int8)
        mask[: self.n] = ~visited
        return mask

    def _pad(self, values: np.ndarray, dtype) -> np.ndarray:
        out = np.zeros((self.max_holes, *values.shape[1:]), dtype=dtype)
        out[: self.n] = values
        return out


class CompactFeatures(_FeatureSet):
    name = "compact"

    def __init__(self, atlas: Atlas, max_holes: int, threshold: float, costs: np.ndarray) -> None:
        super().__init__(atlas, max_holes, threshold, costs)
        self._predicted = self._pad(predicted_quality(atlas), np.float32)
        self._probability = self._pad(default_calibration(threshold).probability_good(atlas), np.float32)
        self._hierarchy = self._pad(self.ids, np.int32)
        self._is_hole = self._pad(np.ones(self.n), np.int8)
        self._truth = clip_ctf(atlas.true_ctf)

    def observation_space(self) -> spaces.Dict:
        return observation_space(COMPACT_SCHEMA, self.max_holes)

    def reset(self, visited: np.ndarray, current: int) -> None:
        pass

    def update(self, visited: np.ndarray, previous: int, hole: int) -> None:
        pass

    def observe(self, visited: np.ndarray, current: int, time_left: float) -> dict[str, np.ndarray]:
        visited_row = np.zeros(self.max_holes, dtype=np.int8)
        visited_row[: self.n] = visited
        measured = np.zeros(self.max_holes, dtype=np.float32)
        measured[: self.n] = np.where(visited, self._truth, 0.0)
        current_row = np.zeros(self.max_holes, dtype=np.int8)
        current_row[current] = 1
        return {
            "predicted_ctf": self._predicted.copy(), "predicted_good": self._probability.copy(),
            "measured_ctf": measured,
            "hierarchy": self._hierarchy.copy(), "is_hole": self._is_hole.copy(),
            "visited": visited_row, "current": current_row,
            "time_left": np.array([min(max(time_left, 0.0), MAX_MINUTES)], dtype=np.float32),
            "costs": self.costs.copy(),
            "threshold": np.array([self.threshold], dtype=np.float32), "action_mask": self._mask(visited),
        }


class CryoRLFeatures(_FeatureSet):
    """The CryoRL papers' per-hole feature matrix, kept up to date incrementally."""

    name = "cryorl"

    def __init__(self, atlas: Atlas, max_holes: int, threshold: float, costs: np.ndarray, history: int = 4) -> None:
        super().__init__(atlas, max_holes, threshold, costs)
        self.history = history
        self.category = not atlas.has_ctf_predictions
        truth = clip_ctf(atlas.true_ctf)
        self._truth_good = truth <= threshold
        if self.category:
            self._hole_value = atlas.predicted_good.astype(np.float32)
            self._counted = np.ones(self.n, dtype=bool)
            self._low_weight = atlas.predicted_good.astype(np.float64)   # expected good among unvisited
            self._bins = None
        else:
            pred = atlas.predicted_ctf
            self._hole_value = (np.minimum(pred, MAX_FEATURE_CTF) / MAX_FEATURE_CTF).astype(np.float32)
            self._counted = pred <= MAX_FEATURE_CTF            # the reference's "unvisited" filter
            self._low_weight = (pred <= threshold).astype(np.float64)
            bins = np.searchsorted(HISTOGRAM_EDGES, pred, side="right") - 1
            bins[pred == HISTOGRAM_EDGES[-1]] = len(HISTOGRAM_EDGES) - 2
            self._bins = np.where((pred >= 0) & (pred <= HISTOGRAM_EDGES[-1]), bins, -1)
        self.n_hist = 0 if self.category else len(HISTOGRAM_EDGES) - 1
        self.group_width = self.n_hist + 4
        self.dim = 2 + 3 * self.group_width + 3
        n_groups = [atlas.n_patches, atlas.n_squares, atlas.n_tiles]
        self._offsets = np.cumsum([0] + n_groups[:-1])
        # rows of the stacked group table used by each hole: its patch, square and tile
        self._group_rows = np.stack([atlas.patch, atlas.square + self._offsets[1], atlas.tile + self._offsets[2]],
                                    axis=1)
        self._level_of_row = np.repeat(np.arange(3), n_groups)
        self._sizes = np.concatenate([np.bincount(ids, minlength=k).astype(np.float64)
                                      for ids, k in zip((atlas.patch, atlas.square, atlas.tile), n_groups)])
        self._caps = np.array(GROUP_CAPS)[self._level_of_row]
        n_rows = int(sum(n_groups))
        self._hist = np.zeros((n_rows, max(self.n_hist, 1)))
        self._counts = np.zeros((n_rows, 4))   # unvisited, unvisited low, visited, visited low
        self._table = np.zeros((n_rows, self.group_width), dtype=np.float32)
        self._frames: deque[np.ndarray] = deque(maxlen=history)

    def observation_space(self) -> spaces.Dict:
        return spaces.Dict({
            "features": spaces.Box(0.0, 1.0, (self.max_holes, self.dim * self.history), np.float32),
            "action_mask": spaces.Box(0, 1, (self.max_holes,), np.int8),
        })

    # ------------------------------------------------------------------ statistics
    def _refresh_rows(self, rows: np.ndarray) -> None:
        counts = self._counts[rows]
        counts[:, 2] = self._sizes[rows] - counts[:, 0]
        self._counts[rows] = counts
        caps = self._caps[rows][:, None]
        normalised = np.minimum(counts, caps) / caps
        if self.n_hist:
            hist = self._hist[rows]
            hist = hist / (hist.sum(axis=1, keepdims=True) + 0.0001)
            normalised = np.concatenate([hist, normalised], axis=1)
        self._table[rows] = normalised

    def _frame(self, visited: np.ndarray, current: int) -> np.ndarray:
        frame = np.empty((self.n, self.dim), dtype=np.float32)
        frame[:, 0] = self._hole_value
        frame[:, 1] = visited
        width = 3 * self.group_width
        frame[:, 2:2 + width] = self._table[self._group_rows].reshape(self.n, width)
        frame[:, 2 + width:] = self.ids == self.ids[current]
        return frame

    def reset(self, visited: np.ndarray, current: int) -> None:
        unvisited = self._counted & ~visited
        self._counts[:] = 0.0
        self._hist[:] = 0.0
        for level in range(3):
            rows = self._group_rows[:, level]
            size = len(self._counts)
            self._counts[:, 0] += np.bincount(rows, weights=unvisited, minlength=size)
            self._counts[:, 1] += np.bincount(rows, weights=unvisited * self._low_weight, minlength=size)
            visited_low = self._truth_good if self.category else self._low_weight.astype(bool)
            self._counts[:, 3] += np.bincount(rows, weights=visited & visited_low, minlength=size)
            if self.n_hist:
                keep = unvisited & (self._bins >= 0)
                np.add.at(self._hist, (rows[keep], self._bins[keep]), 1.0)
        self._refresh_rows(np.arange(len(self._counts)))
        frame = self._frame(visited, current)
        self._frames.clear()
        self._frames.extend([frame] * self.history)

    def update(self, visited: np.ndarray, previous: int, hole: int) -> None:
        """Account for ``hole`` having just been visited (``visited`` already includes it)."""
        rows = self._group_rows[hole]
        if self._counted[hole]:
            self._counts[rows, 0] -= 1.0
            self._counts[rows, 1] -= self._low_weight[hole]
            if self.n_hist and self._bins[hole] >= 0:
                self._hist[rows, self._bins[hole]] -= 1.0
        visited_low = self._truth_good[hole] if self.category else self._low_weight[hole] > 0
        if visited_low:
            self._counts[rows, 3] += 1.0
        self._refresh_rows(rows)
        self._frames.append(self._frame(visited, hole))

    def observe(self, visited: np.ndarray, current: int, time_left: float) -> dict[str, np.ndarray]:
        features = np.zeros((self.max_holes, self.dim * self.history), dtype=np.float32)
        for k, frame in enumerate(self._frames):
            features[: self.n, k * self.dim:(k + 1) * self.dim] = frame
        return {"features": features, "action_mask": self._mask(visited)}


FEATURE_SETS = {"compact": CompactFeatures, "cryorl": CryoRLFeatures}


def make_feature_set(name: str, atlas: Atlas, max_holes: int, threshold: float, costs: np.ndarray) -> _FeatureSet:
    try:
        cls = FEATURE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown feature_set {name!r}; choose one of {', '.join(FEATURE_SETS)}") from None
    return cls(atlas, max_holes, threshold, costs)
