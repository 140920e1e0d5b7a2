"""Score a predictions file against a grid's measured CTFMaxRes with the CryoRL papers' conventions.

Regressor predictions (``name CTFMaxRes``): MAE, Pearson r and Spearman ρ with prediction and truth both clipped
at 20 Å (a failed fit counts as 20 Å), and accuracy, precision and recall of "good" (≤ threshold). Classifier
probabilities (``name P(good) P(bad)``): accuracy, precision and recall of P(good) ≥ 0.5, and the log-loss.
Holes are matched by name; only holes with both a prediction and a CTF estimate are scored.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryorl.atlas import MAX_FEATURE_CTF, Atlas

__all__ = ["score_predictions"]


def score_predictions(predictions: str | os.PathLike, atlas: Atlas, threshold: float = 6.0) -> dict[str, float]:
    """The scores of a predictions file (module docstring) on ``atlas``'s measured holes; also the counts of
    holes scored, predictions without a measured hole, and measured holes without a prediction."""
    from cryorl.loaders import DataFileError, read_predictions
    from cryorl.perception.predictor import quality_metrics

    path = Path(predictions)
    table = read_predictions(path).set_index("name")
    truth = pd.Series(atlas.true_ctf, index=atlas.names)
    truth = truth[np.isfinite(truth.to_numpy())]
    common = table.index.intersection(truth.index)
    if common.empty:
        raise DataFileError(path, f"no predicted hole is a measured hole of {atlas.source}")
    counts = {"unmatched_predictions": int(len(table) - len(common)),
              "unpredicted_holes": int(len(truth) - len(common))}
    measured = truth.loc[common].to_numpy(np.float64)
    if "predicted_ctf" in table:
        predicted = np.clip(table.loc[common, "predicted_ctf"].to_numpy(np.float64), 0.0, MAX_FEATURE_CTF)
        return {**quality_metrics(predicted, measured, threshold), **counts}
    p = table.loc[common, "predicted_good"].to_numpy(np.float64)
    good, called = measured <= threshold, p >= 0.5
    tp = float((good & called).sum())
    eps = 1e-6
    log_loss = -np.mean(np.where(good, np.log(np.clip(p, eps, 1)), np.log(np.clip(1 - p, eps, 1))))
    return {"accuracy": float((good == called).mean()), "precision": tp / max(float(called.sum()), 1.0),
            "recall": tp / max(float(good.sum()), 1.0), "log_loss": float(log_loss), "holes": int(len(common)),
            **counts}
