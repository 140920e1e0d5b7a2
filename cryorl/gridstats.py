"""Summary statistics of a grid: hierarchy sizes, quality, how quality clusters, and prediction accuracy.

Used to compare simulated grids with real sessions (``benchmarks/grid_statistics.py``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cryorl.atlas import MAX_FEATURE_CTF, Atlas, clip_ctf

__all__ = ["grid_statistics", "eta_squared"]


def eta_squared(values: np.ndarray, groups: np.ndarray) -> float:
    """Share of the variance of ``values`` explained by group means (0: no clustering, 1: groups are uniform)."""
    values = np.asarray(values, dtype=np.float64)
    counts = np.bincount(groups)
    means = np.bincount(groups, weights=values) / np.maximum(counts, 1)
    total = np.var(values)
    if total == 0:
        return 0.0
    return float(1.0 - np.mean((values - means[groups]) ** 2) / total)


def grid_statistics(atlas: Atlas, threshold: float = 6.0) -> dict[str, float]:
    """Hierarchy counts, quality distribution, within-patch/-square clustering and prediction quality."""
    measured = np.isfinite(atlas.true_ctf)
    ctf = np.where(np.isfinite(atlas.true_ctf), clip_ctf(atlas.true_ctf), np.nan)
    good = atlas.is_good(threshold)
    per_patch = atlas.holes_per_patch()
    patches_per_square = np.bincount(np.unique(np.stack([atlas.square, atlas.patch]), axis=1)[0])
    squares_per_tile = np.bincount(np.unique(np.stack([atlas.tile, atlas.square]), axis=1)[0])
    stats: dict[str, float] = {
        "holes": len(atlas), "patches": atlas.n_patches, "squares": atlas.n_squares, "tiles": atlas.n_tiles,
        "holes/patch min": per_patch.min(), "holes/patch median": float(np.median(per_patch)),
        "holes/patch max": per_patch.max(),
        "patches/square median": float(np.median(patches_per_square)),
        "squares/tile median": float(np.median(squares_per_tile)),
        f"fraction good (<= {threshold:g} A)": float(good.mean()),
        "fraction CTF fit failed": float(atlas.ctf_fit_failed.mean()),
        "CTF median (A)": float(np.nanmedian(ctf)),
        "CTF 10th percentile (A)": float(np.nanpercentile(ctf, 10)),
        "CTF 90th percentile (A)": float(np.nanpercentile(ctf, 90)),
        "good eta2 within patch": eta_squared(good[measured], atlas.patch[measured]),
        "good eta2 within square": eta_squared(good[measured], atlas.square[measured]),
        "CTF eta2 within patch": eta_squared(ctf[measured], atlas.patch[measured]),
        "CTF eta2 within square": eta_squared(ctf[measured], atlas.square[measured]),
        "fraction of squares mostly bad (<10% good)": float(np.mean(
            np.bincount(atlas.square, weights=good) / np.bincount(atlas.square) < 0.1)),
    }
    if atlas.has_ctf_predictions and measured.any():
        pred = np.minimum(atlas.predicted_ctf[measured], MAX_FEATURE_CTF)
        truth = ctf[measured]
        stats["prediction MAE (A)"] = float(np.mean(np.abs(pred - truth)))
        stats["prediction Pearson r"] = float(np.corrcoef(pred, truth)[0, 1])
        stats["prediction Spearman rho"] = float(pd.Series(pred).corr(pd.Series(truth), method="spearman"))
        stats[f"prediction accuracy at {threshold:g} A"] = float(np.mean((pred <= threshold) == good[measured]))
        best = np.argsort(pred, kind="stable")[: int(np.ceil(0.05 * len(pred)))]      # ties: the first holes
        stats["good among the best-predicted 5 %"] = float(good[measured][best].mean())
        stats["prediction eta2 within patch"] = eta_squared(pred, atlas.patch[measured])
        stats["prediction eta2 within square"] = eta_squared(pred, atlas.square[measured])
    return stats
