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

:func:`neighbour_probabilities` gives ``recalibrated`` and ``with_neighbours`` as probabilities for every hole
of the grid, and :class:`GivenProbabilities` hands them to the planner in place of a calibration: the planner that
knows all a grid's exposures could teach (``python benchmarks/ceilings.py``). On the real Aldolase split
neighbours teach little (its residuals are mostly the hole's own); on simulated grids they teach much more.
``python benchmarks/neighbours.py`` gives the log-losses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from cryorl.atlas import Atlas
from cryorl.calibration import Calibration, default_calibration

__all__ = ["neighbour_information", "neighbour_probabilities", "leave_one_out_mean", "GivenProbabilities",
           "MIN_MEASURED_HOLES"]

MIN_MEASURED_HOLES = 10
"""The fewest measured holes a grid's own fits (and the ceilings built on them) are made from."""


def leave_one_out_mean(values: np.ndarray, group: np.ndarray, counted: np.ndarray | None = None) -> np.ndarray:
    """Per element, the mean of ``values`` over the other elements of its group (0 where there is none);
    ``counted`` (a boolean per element): only those elements enter the means (every element still gets one)."""
    counted = np.ones(len(values), bool) if counted is None else counted
    values = np.where(counted, values, 0.0)
    sums = np.bincount(group, values)
    others = np.bincount(group, counted)[group] - counted
    return np.where(others > 0, (sums[group] - values) / np.maximum(others, 1), 0.0)


def _fit(columns: np.ndarray, good: np.ndarray) -> tuple[float, np.ndarray]:
    """The log-loss of the maximum-likelihood logistic model on ``columns`` (a bias column is added) and its
    weights (the bias first)."""
    x = np.column_stack([np.ones(len(good)), columns])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w
        p = 1.0 / (1.0 + np.exp(-z))
        return float(np.mean(np.logaddexp(0.0, z) - good * z)), x.T @ (p - good) / len(good)

    start = np.zeros(x.shape[1])
    start[1] = 1.0                                                   # the calibration's log-odds as they are
    fit = minimize(loss, start, jac=True, method="BFGS")
    return float(fit.fun), fit.x


def _log_odds(weights: np.ndarray, *columns: np.ndarray) -> np.ndarray:
    return weights[0] + np.column_stack(columns) @ weights[1:]


class _NeighbourFit:
    """The grid's recalibration and its model with neighbours, fitted on ``atlas``'s measured holes; log-odds for
    every hole."""

    def __init__(self, atlas: Atlas, calibration: Calibration | None, threshold: float) -> None:
        calibration = calibration or default_calibration(threshold)
        self.measured = np.isfinite(atlas.true_ctf)
        count = int(self.measured.sum())
        if count < MIN_MEASURED_HOLES:
            raise ValueError(f"{atlas.source or 'the grid'}: {count} measured holes; neighbour information "
                             f"needs at least {MIN_MEASURED_HOLES}")
        m = self.measured
        self.z = np.clip(calibration.log_odds(atlas), -30.0, 30.0)
        self.good = atlas.is_good(threshold)[m].astype(float)
        self.calibrated = float(np.mean(np.logaddexp(0.0, self.z[m]) - self.good * self.z[m]))
        self.recalibrated, w = _fit(self.z[m, None], self.good)
        self.z_recalibrated = _log_odds(w, self.z)
        residual = np.zeros(len(atlas))              # what the grid's own recalibration leaves unexplained
        residual[m] = self.good - 1.0 / (1.0 + np.exp(-self.z_recalibrated[m]))
        self.residual = residual[m]
        # an unmeasured neighbour teaches nothing: only measured holes enter the means
        self.patch_rest = leave_one_out_mean(residual, atlas.patch, m)
        self.square_rest = leave_one_out_mean(residual, atlas.square, m)
        self.with_neighbours, w = _fit(np.column_stack([self.z, self.patch_rest, self.square_rest])[m], self.good)
        self.z_with_neighbours = _log_odds(w, self.z, self.patch_rest, self.square_rest)


def neighbour_information(atlas: Atlas, calibration: Calibration | None = None, threshold: float = 6.0
                          ) -> dict[str, float]:
    """Log-losses and residual correlation on ``atlas``'s measured holes (see the module docstring)."""
    fit = _NeighbourFit(atlas, calibration, threshold)
    patch_rest = fit.patch_rest[fit.measured]
    r = float(np.corrcoef(fit.residual, patch_rest)[0, 1]) if fit.residual.std() * patch_rest.std() > 0 else 0.0
    return {"holes": float(fit.measured.sum()), "calibrated": fit.calibrated, "recalibrated": fit.recalibrated,
            "with_neighbours": fit.with_neighbours, "gain": fit.recalibrated - fit.with_neighbours,
            "patch_residual_r": r}


def neighbour_probabilities(atlas: Atlas, calibration: Calibration | None = None, threshold: float = 6.0
                            ) -> dict[str, np.ndarray]:
    """Per hole of ``atlas``, the probability that it is good under the grid's own recalibration
    (``recalibrated``) and with the mean residual of the other measured holes of its patch and square
    (``with_neighbours``), both fitted on the grid's measured holes (module docstring). A hole's own outcome
    never enters its probability except through the fitted weights; an unmeasured hole gets its measured
    neighbours' means. They know the grid's outcomes: a ceiling for benchmarks, never a policy's input."""
    fit = _NeighbourFit(atlas, calibration, threshold)
    return {name: 1.0 / (1.0 + np.exp(-z)) for name, z in
            (("recalibrated", fit.z_recalibrated), ("with_neighbours", fit.z_with_neighbours))}


@dataclass(frozen=True, eq=False)
class GivenProbabilities:
    """Probabilities given per hole of one grid, in place of a :class:`~cryorl.calibration.Calibration`, for
    :class:`~cryorl.agents.PlannerPolicy` (``PlannerPolicy(GivenProbabilities(p))``): a planner on
    :func:`neighbour_probabilities`, or on the outcomes themselves, is a ceiling (``benchmarks/ceilings.py``)."""

    p: np.ndarray
    threshold: float = 6.0
    source = "given probabilities"
    online = None                                   # no prior for planner-online's update: it refuses them

    def probability_good(self, atlas: Atlas) -> np.ndarray:
        if len(atlas) != len(self.p):
            raise ValueError(f"{len(self.p)} given probabilities for a grid of {len(atlas)} holes")
        return self.p
