"""Calibrated probabilities that a hole is good, from predictions with known outcomes.

A regressor's predicted CTFMaxRes is not a probability: how often a hole predicted at 5.5 Å turns out ≤ 6 Å
depends on the regressor's errors — and on its neighbours, since ice thickness is shared by the holes of a patch
and a square: an isolated good-looking hole in a patch that looks poor is less likely good than the same
prediction in a patch that looks good throughout. :class:`Calibration` is a logistic model of P(CTFMaxRes ≤
threshold) on a hole's predicted score ``s`` (Å, or the CTFMaxRes-equivalent of a classifier's probability,
:func:`cryorl.quality.predicted_quality`), the mean score of its patch and of its square, and the same three past
the threshold (hinges ``max(x − threshold, 0)``), fitted by maximum likelihood on grids whose outcomes are known —
never on the grid being evaluated. A classifier's probability is used as it is (it is already a probability of
the 6 Å question).

The shipped calibration (``cryorl/resources/calibration.json``) is fitted on simulated grids: the published
predictions of the real training split are in-sample for the regressor (it was trained there), so a calibration
fitted on them alone would be over-confident on new grids. ``python benchmarks/calibration.py`` refits it and
reports its log-loss and reliability on the real split.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from cryorl.atlas import Atlas
from cryorl.fileio import atomic_write_text
from cryorl.quality import CLASSIFIER_THRESHOLD, predicted_quality, probability_good
from cryorl.resources import RESOURCES

__all__ = ["Calibration", "FEATURES", "DEFAULT_CALIBRATION", "default_calibration", "fit_on_simulated_grids"]

DEFAULT_CALIBRATION = RESOURCES / "calibration.json"
FEATURES = ("bias", "score", "patch mean", "square mean", "score past threshold", "patch mean past threshold",
            "square mean past threshold")
"""The calibration's inputs, in the order of :attr:`Calibration.weights` (scores in Å)."""


def calibration_features(atlas: Atlas, threshold: float) -> np.ndarray:
    """(holes, len(FEATURES)) inputs of the calibration: static, computed once per grid."""
    s = predicted_quality(atlas)
    patch_mean = (np.bincount(atlas.patch, s) / np.bincount(atlas.patch))[atlas.patch]
    square_mean = (np.bincount(atlas.square, s) / np.bincount(atlas.square))[atlas.square]
    past = [np.maximum(x - threshold, 0.0) for x in (s, patch_mean, square_mean)]
    return np.stack([np.ones_like(s), s, patch_mean, square_mean, *past], axis=1)


@dataclass(frozen=True)
class Calibration:
    """P(CTFMaxRes ≤ ``threshold``) = sigmoid(features · ``weights``); see the module docstring."""

    weights: tuple[float, ...]
    threshold: float = 6.0
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.weights) != len(FEATURES) or not np.all(np.isfinite(self.weights)):
            raise ValueError(f"a calibration needs {len(FEATURES)} finite weights ({', '.join(FEATURES)}), got "
                             f"{list(self.weights)}")

    def log_odds(self, atlas: Atlas) -> np.ndarray:
        """Per hole, the log-odds that it is good."""
        if not atlas.has_ctf_predictions and self.threshold == CLASSIFIER_THRESHOLD:
            p = np.clip(probability_good(atlas, self.threshold), 1e-4, 1 - 1e-4)
            return np.log(p) - np.log1p(-p)
        return calibration_features(atlas, self.threshold) @ np.asarray(self.weights)

    def probability_good(self, atlas: Atlas) -> np.ndarray:
        """Per hole, the probability that its CTFMaxRes is ≤ the threshold (a classifier's own probability as is)."""
        return 1.0 / (1.0 + np.exp(-self.log_odds(atlas)))

    @classmethod
    def fit_atlases(cls, atlases: list[Atlas], threshold: float = 6.0, source: str = "") -> Calibration:
        """Maximum-likelihood fit on the measured holes of grids with known outcomes (regressor predictions)."""
        from scipy.optimize import minimize

        rows, good = [], []
        for atlas in atlases:
            if not atlas.has_ctf_predictions:
                raise ValueError(f"{atlas.source}: a calibration is fitted on predicted CTFMaxRes values, not "
                                 "classifier probabilities (those are used as they are)")
            measured = np.isfinite(atlas.true_ctf)
            rows.append(calibration_features(atlas, threshold)[measured])
            good.append(atlas.is_good(threshold)[measured])
        x, y = np.concatenate(rows), np.concatenate(good).astype(np.float64)
        if len(y) < 100 or y.min() == y.max():
            raise ValueError(f"{len(y)} measured holes ({int(y.sum())} good) are too few to calibrate on")

        def loss(w):
            z = x @ w
            return np.mean(np.logaddexp(0.0, z) - y * z), x.T @ (1.0 / (1.0 + np.exp(-z)) - y) / len(y)

        result = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B")
        return cls(tuple(round(float(w), 6) for w in result.x), float(threshold), source)

    def log_loss(self, atlas: Atlas) -> float:
        """Mean negative log-likelihood of the measured holes' outcomes (nats; lower is better)."""
        measured = np.isfinite(atlas.true_ctf)
        z = self.log_odds(atlas)[measured]
        y = atlas.is_good(self.threshold)[measured]
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    def save(self, path: str | os.PathLike) -> Path:
        text = json.dumps({"format": "cryorl-calibration/2", "threshold": self.threshold, "source": self.source,
                           "features": list(FEATURES), "weights": list(self.weights)}, indent=1)
        return atomic_write_text(path, text + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error.msg})") from None
        if data.get("format") != "cryorl-calibration/2" or data.get("features") != list(FEATURES):
            raise ValueError(f"{path}: not a cryorl calibration of this version (format {data.get('format')!r})")
        return cls(tuple(data["weights"]), float(data["threshold"]), data.get("source", ""))


def fit_on_simulated_grids(threshold: float = 6.0, seeds: range = range(1000, 1020)) -> Calibration:
    """A calibration fitted on simulated grids of seeds never used for evaluation (default 1000-1019)."""
    from cryorl.synth import simulate_atlas

    return Calibration.fit_atlases([simulate_atlas(seed) for seed in seeds], threshold,
                                   f"simulated grids, seeds {seeds.start}-{seeds.stop - 1}")


@lru_cache(maxsize=8)
def default_calibration(threshold: float = 6.0) -> Calibration:
    """The shipped calibration at 6 Å; for another threshold, one fitted on simulated grids now (≈ 1 s)."""
    if threshold == 6.0 and DEFAULT_CALIBRATION.exists():
        return Calibration.load(DEFAULT_CALIBRATION)
    return fit_on_simulated_grids(threshold)
