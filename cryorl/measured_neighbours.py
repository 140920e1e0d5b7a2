"""How much a hole's measured neighbours can teach about it: the ceiling of learning from this grid's exposures.

A planner that learns on the grid (``planner-online``, a learned agent reading measured CTFMaxRes) can only gain
where the outcome of a hole, beyond what its calibrated prediction says, is shared with the other holes of its
patch and square — ice shared by neighbours that the hole-image model missed. :func:`neighbour_information`
measures that on a grid whose outcomes are known, on its measured holes:

- ``calibrated``: log-loss (nats) of the calibration's probabilities;
- ``recalibrated``: after the grid's own bias and slope on the calibration's log-odds (what the online update of
  :class:`~cryorl.calibration.OnlineCalibration` can reach at best);
- ``with_neighbours``: after adding, to that, the mean residual (outcome − recalibrated probability) of the
  *other* measured holes of the hole's patch and of its square — as if every neighbour had been exposed, fitted
  on the grid itself, so an optimistic ceiling of what exposures can teach;
- ``patch_residual_r``: Pearson r between a hole's residual and the mean residual of the rest of its patch
  (residuals of the recalibrated probabilities);
- ``gain``: ``recalibrated − with_neighbours``.

On the real Aldolase split neighbours teach little (its residuals are mostly the hole's own); on simulated grids
they teach much more. ``python benchmarks/neighbours.py`` gives the table.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from cryorl.atlas import Atlas
from cryorl.calibration import Calibration, default_calibration

__all__ = ["neighbour_information", "leave_one_out_mean"]


def leave_one_out_mean(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Per element, the mean of ``values`` over the other elements of its group (0 for an element alone)."""
    sums = np.bincount(group, values)
    counts = np.bincount(group)
    others = counts[group] - 1
    return np.where(others > 0, (sums[group] - values) / np.maximum(others, 1), 0.0)


def _fit(columns: np.ndarray, good: np.ndarray) -> tuple[float, np.ndarray]:
    """The log-loss of the maximum-likelihood logistic model on ``columns`` (a bias column is added) and its
    log-odds."""
    x = np.column_stack([np.ones(len(good)), columns])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w
        p = 1.0 / (1.0 + np.exp(-z))
        return float(np.mean(np.logaddexp(0.0, z) - good * z)), x.T @ (p - good) / len(good)

    start = np.zeros(x.shape[1])
    start[1] = 1.0                                                   # the calibration's log-odds as they are
    fit = minimize(loss, start, jac=True, method="BFGS")
    return float(fit.fun), x @ fit.x


def neighbour_information(atlas: Atlas, calibration: Calibration | None = None, threshold: float = 6.0
                          ) -> dict[str, float]:
    """Log-losses and residual correlation on ``atlas``'s measured holes (see the module docstring)."""
    calibration = calibration or default_calibration(threshold)
    measured = np.flatnonzero(np.isfinite(atlas.true_ctf))
    if len(measured) < 10:
        raise ValueError(f"{atlas.source or 'the grid'}: {len(measured)} measured holes; neighbour information "
                         "needs at least 10")
    z = np.clip(calibration.log_odds(atlas)[measured], -30.0, 30.0)
    good = atlas.is_good(threshold)[measured].astype(float)
    calibrated = float(np.mean(np.logaddexp(0.0, z) - good * z))
    recalibrated, z_grid = _fit(z[:, None], good)
    residual = good - 1.0 / (1.0 + np.exp(-z_grid))        # what the grid's own recalibration leaves unexplained
    # group ids among the measured holes only: an unmeasured neighbour teaches nothing
    patch = np.unique(atlas.patch[measured], return_inverse=True)[1]
    square = np.unique(atlas.square[measured], return_inverse=True)[1]
    patch_rest, square_rest = leave_one_out_mean(residual, patch), leave_one_out_mean(residual, square)
    with_neighbours, _ = _fit(np.column_stack([z, patch_rest, square_rest]), good)
    r = float(np.corrcoef(residual, patch_rest)[0, 1]) if residual.std() * patch_rest.std() > 0 else 0.0
    return {"holes": float(len(measured)), "calibrated": calibrated, "recalibrated": recalibrated,
            "with_neighbours": with_neighbours, "gain": recalibrated - with_neighbours, "patch_residual_r": r}
