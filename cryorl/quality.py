"""What a hole's prediction says about its quality, whichever kind of prediction a grid has.

The CryoRL releases come with two kinds of prediction: a regressor's CTFMaxRes (Å, the 2023 paper) or a two-class
classifier's probability that CTFMaxRes < 6 Å (the 2022 paper). Everything downstream — the observation, the
baselines, the learned agents — reads both through two numbers per hole:

- :func:`predicted_quality`: a CTFMaxRes-like score in Å (lower is better, clipped at 20 Å). For a regressor it is
  the prediction; for a classifier it is the CTFMaxRes whose logistic probability of being good is the
  classifier's: ``6 Å − s · logit(p)``, with ``s`` = :data:`PROBABILITY_SCALE` Å per unit of log-odds, so
  ``p = 0.5`` sits on the 6 Å threshold.
- :func:`probability_good`: the probability that CTFMaxRes ≤ threshold, ``sigmoid((threshold − score) / s)`` of
  the same score — the classifier's own probability at the 6 Å threshold.

``s`` = 2 Å is about the published regressor's mean absolute error (2.5 Å): an uncalibrated, prior mapping. A
calibration fitted on data with known outcomes can replace it where one is available.
"""
from __future__ import annotations

import numpy as np

from cryorl.atlas import MAX_FEATURE_CTF, Atlas

__all__ = ["CLASSIFIER_THRESHOLD", "PROBABILITY_SCALE", "predicted_quality", "probability_good",
           "ctf_from_probability", "as_classifier"]

CLASSIFIER_THRESHOLD = 6.0
"""The CTFMaxRes (Å) whose "below" the CryoRL classifier's probability is about."""
PROBABILITY_SCALE = 2.0
"""Å of CTFMaxRes per unit of log-odds in the mapping between a CTF-like score and a probability of good."""
_MAX_LOG_ODDS = 8.0


def ctf_from_probability(p: np.ndarray) -> np.ndarray:
    """The CTFMaxRes-like score (Å, clipped to [0, 20]) of classifier probabilities of CTFMaxRes < 6 Å."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        log_odds = np.clip(np.log(p) - np.log1p(-p), -_MAX_LOG_ODDS, _MAX_LOG_ODDS)
    return np.clip(CLASSIFIER_THRESHOLD - PROBABILITY_SCALE * log_odds, 0.0, MAX_FEATURE_CTF)


def predicted_quality(atlas: Atlas) -> np.ndarray:
    """Per hole, predicted CTFMaxRes in Å (clipped at 20), or its equivalent for classifier probabilities."""
    if atlas.has_ctf_predictions:
        return np.minimum(atlas.predicted_ctf, MAX_FEATURE_CTF)
    return ctf_from_probability(atlas.predicted_good)


def probability_good(atlas: Atlas, threshold: float = 6.0) -> np.ndarray:
    """Per hole, the probability that its CTFMaxRes is ≤ ``threshold`` Å, from its prediction (module docstring)."""
    if not atlas.has_ctf_predictions and threshold == CLASSIFIER_THRESHOLD:
        return np.asarray(atlas.predicted_good, dtype=np.float64).copy()
    return 1.0 / (1.0 + np.exp(-(threshold - predicted_quality(atlas)) / PROBABILITY_SCALE))


def as_classifier(atlas: Atlas, scale: float = 1.5) -> Atlas:
    """The grid with a two-class classifier's probabilities of CTFMaxRes < 6 Å (rounded to 0.01, as the CryoRL
    2022 files are) in place of its predicted CTFMaxRes: ``sigmoid((6 Å − prediction) / scale)``. For training and
    benchmarking the 2022 setting on grids that have regressor predictions."""
    if not atlas.has_ctf_predictions:
        raise ValueError(f"{atlas.source or 'this grid'} has no predicted CTFMaxRes to turn into probabilities")
    p = 1.0 / (1.0 + np.exp(-(CLASSIFIER_THRESHOLD - atlas.predicted_ctf) / scale))
    return atlas.with_predictions(predicted_good=np.round(p, 2))
