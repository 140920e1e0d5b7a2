"""How good a grid's predictions are, and predictions of a chosen quality for any grid.

A hole-image regressor is much better on the grid it was trained on than on a grid it has never seen: the
published ResNet-50 has MAE 1.97 Å and Pearson r 0.71 on the Aldolase training split (in-sample) but 2.55 Å and
0.63 on the validation grid (both with CTFMaxRes and prediction clipped at 20 Å). Policies and calibrations
tuned on in-sample predictions expect more than an unseen grid gives, so training and validation grids default to
*unseen* quality:

=============  =================================================================================================
quality        predictions
=============  =================================================================================================
``in-sample``  as they are (the simulator's image model: MAE 1.95 Å, r 0.73 on average; a real split's own)
``unseen``     MAE 2.55 Å and Pearson r 0.63, the published regressor on the unseen grid
a number       that MAE (Å), on the path from the grid's own predictions through its unseen ones (so r falls as
               the MAE rises: on the training split 0.73 at 1.9 Å, 0.54 at 3.2 Å); below the grid's own MAE,
               improved by mixing in the truth
=============  =================================================================================================

:func:`degrade_predictions` makes them, seeded, for any grid with regressor predictions and measured holes.
Unseen-quality predictions ``u`` are

    u = m + k · (p − m) + σ · e,   e ∝ (c / median c)² · (√0.6 · ε_hole + √0.3 · ε_patch + √0.1 · ε_square)

with ``p`` the grid's own predictions, ``m`` their median, ``c`` the hole's CTFMaxRes (clipped at 20 Å; its
prediction where unmeasured), ``ε`` standard normals and ``e`` scaled to unit variance; ``σ`` and ``k`` are found
(bisection, and the root nearest k = 1) so that MAE and r hit their targets exactly, and the result is clipped to
1.5-30 Å. Two choices shape the error, both stated here:

- it is shared in part by the holes of a patch and of a square (:data:`ERROR_SHARES`), as a regressor's errors
  on a new grid are (the imaging of one patch, the ice of one square; the real split's own residuals have 11 % of
  their variance between patches and 2 % between squares);
- it grows with the hole's CTFMaxRes (:data:`ERROR_EXPONENT`), so most of it lies among bad holes. This is what
  the unseen grid shows: its accuracy at 6 Å stays high (0.89) while its MAE rises to 2.55 Å, and greedy-local
  collects 0.89 / 0.89 / 0.87 of the oracle's good exposures at 120 / 240 / 480 min there. On the training split
  at unseen quality it collects 0.89 / 0.89 / 0.87 (20 starts; accuracy 0.85), where errors of one size
  everywhere give 0.85 / 0.86 / 0.86 (accuracy 0.82; ``benchmarks/prediction_quality.py``).

A target MAE alone moves along ``q = p + α · (u − p)`` (α by bisection; α = 1 is the unseen quality; where no
scale gives the grid both unseen targets, along ``e``); below the grid's own MAE the truth is mixed in instead,
``q = p + λ · (min(truth, 20) − p)``.

Accuracy at 6 Å is a property of the grid as much as of the predictor (it rises with the share of clearly bad
holes): at unseen quality it is 0.85 on the training split (0.87 in-sample) and 0.78-0.85 on simulated grids (0.82-0.87
in-sample), where the unseen validation grid has 0.89.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryorl.atlas import MAX_FEATURE_CTF, Atlas
from cryorl.fileio import atomic_write_text

__all__ = ["QualityTarget", "PREDICTION_QUALITIES", "ERROR_SHARES", "resolve_quality", "prediction_metrics",
           "degraded_values", "degrade_predictions", "with_prediction_quality", "write_degraded_split"]


@dataclass(frozen=True)
class QualityTarget:
    """Predictions with this mean absolute error (Å) and, optionally, Pearson r against the truth (both clipped at
    20 Å)."""

    mae: float
    pearson_r: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.mae, (int, float)) and np.isfinite(self.mae) and 0 < self.mae < MAX_FEATURE_CTF):
            raise ValueError(f"a prediction MAE must be a number of Å between 0 and {MAX_FEATURE_CTF:g}, not "
                             f"{self.mae!r}")
        if self.pearson_r is not None and not (np.isfinite(self.pearson_r) and 0 < self.pearson_r < 1):
            raise ValueError(f"a prediction Pearson r must be between 0 and 1, not {self.pearson_r!r}")


PREDICTION_QUALITIES: dict[str, QualityTarget | None] = {
    "in-sample": None,
    "unseen": QualityTarget(2.55, 0.63),
}
"""Named prediction qualities (module docstring); ``None``: the predictions as they are."""
ERROR_SHARES = (0.6, 0.3, 0.1)
"""Shares of the added error's variance per hole, per patch and per square."""
ERROR_EXPONENT = 2.0
"""The added error's size grows as (CTFMaxRes / median CTFMaxRes) to this power (module docstring)."""
PREDICTION_RANGE = (1.5, 30.0)
"""Predictions are clipped to this range (Å), the simulator's."""
def resolve_quality(quality: str | float | QualityTarget | None) -> QualityTarget | None:
    """A quality name (``in-sample``, ``unseen``), a target MAE in Å, or a :class:`QualityTarget`."""
    if quality is None or isinstance(quality, QualityTarget):
        return quality
    if isinstance(quality, str):
        if quality in PREDICTION_QUALITIES:
            return PREDICTION_QUALITIES[quality]
        try:
            quality = float(quality)
        except ValueError:
            raise ValueError(f"unknown prediction quality {quality!r}; choose {', '.join(PREDICTION_QUALITIES)} "
                             "or a target MAE in Å") from None
    if isinstance(quality, (bool, np.bool_)) or not isinstance(quality, (int, float, np.integer, np.floating)):
        raise ValueError(f"a prediction quality is {', '.join(PREDICTION_QUALITIES)} or a target MAE in Å, not "
                         f"{quality!r}")
    return QualityTarget(float(quality))


def prediction_metrics(predicted: np.ndarray, truth: np.ndarray, threshold: float = 6.0) -> dict[str, float]:
    """MAE (Å), Pearson r and accuracy at ``threshold`` of predictions against measured CTFMaxRes, both clipped at
    20 Å, over the holes whose truth is known."""
    measured = np.isfinite(truth)
    p = np.minimum(np.asarray(predicted, np.float64)[measured], MAX_FEATURE_CTF)
    t = np.minimum(np.asarray(truth, np.float64)[measured], MAX_FEATURE_CTF)
    return {"mae": float(np.mean(np.abs(p - t))), "pearson_r": float(np.corrcoef(p, t)[0, 1]),
            "accuracy": float(np.mean((p <= threshold) == (t <= threshold)))}


def _error_draws(n: int, patch: np.ndarray, square: np.ndarray, rng: np.random.Generator,
                 shares: tuple[float, float, float]) -> np.ndarray:
    """The standardised error ``e`` per hole (module docstring)."""
    hole_share, patch_share, square_share = shares
    e = (np.sqrt(hole_share) * rng.standard_normal(n)
         + np.sqrt(patch_share) * rng.standard_normal(int(patch.max()) + 1)[patch]
         + np.sqrt(square_share) * rng.standard_normal(int(square.max()) + 1)[square])
    return e / max(float(e.std()), 1e-12)


def _bisect(function, low: np.ndarray, high: np.ndarray, target: float, increasing: bool,
            steps: int = 40) -> np.ndarray:
    """Per row, the argument in [low, high] where a monotone ``function`` (vectorised over rows) meets ``target``."""
    for _ in range(steps):
        middle = (low + high) / 2
        above = function(middle) > target
        if not increasing:
            above = ~above
        high, low = np.where(above, middle, high), np.where(above, low, middle)
    return (low + high) / 2


def degraded_values(predicted: np.ndarray, truth: np.ndarray, patch: np.ndarray, square: np.ndarray,
                    target: QualityTarget, rng: np.random.Generator,
                    shares: tuple[float, float, float] = ERROR_SHARES, what: str = "the grid",
                    exact_r: bool = True, exponent: float = ERROR_EXPONENT) -> np.ndarray:
    """Predicted CTFMaxRes (Å) of ``target`` quality from ``predicted`` and the measured ``truth`` (NaN where
    unknown), per hole with its patch and square ids: the arrays behind :func:`degrade_predictions`. Where no
    scale reaches both targets (a small grid, or one of nearly all bad holes), ``exact_r=False`` keeps the MAE
    target and lets r follow (as the simulator does); ``exact_r=True`` refuses."""
    predicted = np.asarray(predicted, np.float64)
    truth = np.asarray(truth, np.float64)
    measured = np.isfinite(truth)
    if measured.sum() < 10:
        raise ValueError(f"{what} has {int(measured.sum())} measured holes: too few to set its prediction quality")
    e = _error_draws(len(predicted), np.asarray(patch), np.asarray(square), rng, shares)
    quality = np.minimum(np.where(measured, truth, predicted), MAX_FEATURE_CTF)    # the prediction where unmeasured
    e = e * (quality / np.median(quality)) ** exponent
    e = e / max(float(e.std()), 1e-12)
    own = prediction_metrics(predicted, truth)
    p, t = predicted[measured], np.minimum(truth[measured], MAX_FEATURE_CTF)

    if target.mae <= own["mae"]:                       # better than the grid's own: mix in the truth
        out = predicted.copy()
        out[measured] = p + (1.0 - target.mae / own["mae"]) * (t - np.minimum(p, MAX_FEATURE_CTF))
        return out
    if target.pearson_r is None:                       # along the path through the unseen quality
        direction = e                                  # without an unseen point: added error alone
        unseen = PREDICTION_QUALITIES["unseen"]
        if own["mae"] < unseen.mae and own["pearson_r"] > unseen.pearson_r:
            try:
                direction = _unseen_values(predicted, measured, t, e, unseen, own, what) - predicted
            except ValueError:                         # no scale gives the grid both unseen MAE and r
                pass
        return _along(predicted, direction, measured, t, target.mae)
    try:
        return _unseen_values(predicted, measured, t, e, target, own, what)
    except ValueError:
        if exact_r:
            raise
        return _along(predicted, e, measured, t, target.mae)


def _along(predicted: np.ndarray, direction: np.ndarray, measured: np.ndarray, t: np.ndarray,
           mae: float) -> np.ndarray:
    """``predicted + α · direction`` (clipped to the predictions' range) with the MAE ``mae``."""
    low, high = PREDICTION_RANGE
    alpha = _bisect(lambda a: _mae(np.clip(predicted[measured] + a[:, None] * direction[measured], low, high), t),
                    np.zeros(1), np.full(1, 1e3), mae, increasing=True)[0]
    return np.clip(predicted + alpha * direction, low, high)


def _mae(values: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per row of ``values``, the MAE against ``truth`` with both clipped at 20 Å."""
    return np.mean(np.abs(np.minimum(values, MAX_FEATURE_CTF) - truth), axis=-1)


def _unseen_values(predicted: np.ndarray, measured: np.ndarray, t: np.ndarray, e: np.ndarray,
                   target: QualityTarget, own: dict[str, float], what: str) -> np.ndarray:
    """``m + k (p − m) + σ e`` with ``k`` and ``σ`` such that MAE and Pearson r hit ``target`` (module docstring)."""
    if target.pearson_r >= own["pearson_r"]:
        raise ValueError(f"{what}'s predictions have Pearson r {own['pearson_r']:.3f}; added error cannot raise "
                         f"it to {target.pearson_r:g}")
    low, high = PREDICTION_RANGE
    median = float(np.median(predicted))
    p, e_m = predicted[measured], e[measured]
    tc = t - t.mean()

    def values(scale, sigma):                          # (rows, measured holes)
        return np.clip(median + scale[:, None] * (p - median) + sigma[:, None] * e_m, low, high)

    def pearson(scale, sigma):
        q = np.minimum(values(scale, sigma), MAX_FEATURE_CTF)
        q = q - q.mean(axis=1, keepdims=True)
        return (q @ tc) / np.sqrt((q * q).sum(axis=1) * (tc @ tc))

    def sigma_for_r(scale):
        return _bisect(lambda s: pearson(scale, s), np.zeros(len(scale)), np.full(len(scale), 40.0),
                       target.pearson_r, increasing=False)

    scales = np.linspace(0.25, 3.0, 56)
    gap = _mae(values(scales, sigma_for_r(scales)), t) - target.mae
    roots = np.flatnonzero(np.sign(gap[:-1]) != np.sign(gap[1:]))
    if not len(roots):
        raise ValueError(f"cannot give {what} MAE {target.mae:g} Å with Pearson r {target.pearson_r:g} (its "
                         f"predictions: MAE {own['mae']:.2f} Å, r {own['pearson_r']:.3f}; at that r the MAE "
                         f"reaches {gap.min() + target.mae:.2f}-{gap.max() + target.mae:.2f} Å)")
    i = roots[np.argmin(np.abs(scales[roots] - 1.0))]
    scale = np.array([scales[i] - gap[i] * (scales[i + 1] - scales[i]) / (gap[i + 1] - gap[i])])
    sigma = sigma_for_r(scale)
    return np.clip(median + scale[0] * (predicted - median) + sigma[0] * e, low, high)


def degrade_predictions(atlas: Atlas, mae: float, pearson_r: float | None = None, *, seed: int = 0,
                        shares: tuple[float, float, float] = ERROR_SHARES, exponent: float = ERROR_EXPONENT) -> Atlas:
    """``atlas`` with its predicted CTFMaxRes replaced by predictions of MAE ``mae`` Å (and Pearson r
    ``pearson_r``) against its measured holes, seeded (module docstring; ``exponent`` 0: an error of one size for
    every hole). Needs regressor predictions; for the 2022 setting degrade first, then
    :func:`cryorl.quality.as_classifier`."""
    if not atlas.has_ctf_predictions:
        raise ValueError(f"{atlas.source or 'this grid'} has classifier probabilities, not predicted CTFMaxRes: "
                         "degrade a regressor's predictions, then convert them (cryorl.quality.as_classifier)")
    values = degraded_values(atlas.predicted_ctf, atlas.true_ctf, atlas.patch, atlas.square,
                             QualityTarget(mae, pearson_r), np.random.default_rng(seed), shares,
                             atlas.source or "the grid", exponent=exponent)
    return atlas.with_predictions(values)


def with_prediction_quality(atlas: Atlas, quality: str | float | QualityTarget | None, seed: int = 0) -> Atlas:
    """``atlas`` at a named quality (``in-sample``: unchanged; ``unseen``), a target MAE, or a target."""
    target = resolve_quality(quality)
    if target is None:
        return atlas
    return degrade_predictions(atlas, target.mae, target.pearson_r, seed=seed)


def write_degraded_split(data_dir: str | os.PathLike, dest: str | os.PathLike, split: str = "train",
                         quality: str | float | QualityTarget = "unseen", seed: int = 0) -> Path:
    """A CryoRL-format copy of a split (2023 layout: CTF table and timestamps as they are) whose predictions file
    holds predictions of ``quality`` (:func:`with_prediction_quality`), so that ``cryorl evaluate --data DEST
    --split SPLIT`` runs on it. Returns ``dest``; each file is written atomically."""
    from cryorl.loaders import dataset_file, dataset_files, load_cryorl_dataset

    files = dataset_files(data_dir, split, era="2023")
    atlas = with_prediction_quality(load_cryorl_dataset(data_dir, split, era="2023"), quality, seed)
    dest = Path(dest)
    for kind in ("ctf", "timestamps"):
        if files.get(kind) is not None and Path(files[kind]).exists():
            atomic_write_text(dest / Path(files[kind]).name, Path(files[kind]).read_text())
    lines = "".join(f"{name} {value:.3f}\n" for name, value in zip(atlas.names, atlas.predicted_ctf))
    atomic_write_text(dest / dataset_file("2023", "predictions", split), lines)
    return dest
