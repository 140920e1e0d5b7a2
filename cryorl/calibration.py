"""Calibrated probabilities that a hole is good, from predictions with known outcomes.

A regressor's predicted CTFMaxRes is not a probability: how often a hole predicted at 5.5 Å turns out ≤ 6 Å
depends on the regressor's errors — and on its neighbours, since ice thickness is shared by the holes of a patch
and a square: an isolated good-looking hole in a patch that looks poor is less likely good than the same
prediction in a patch that looks good throughout. :class:`Calibration` is a logistic model of P(CTFMaxRes ≤
threshold) on a hole's predicted score ``s`` (Å, or the CTFMaxRes-equivalent of a classifier's probability,
:func:`cryorl.quality.predicted_quality`), the mean score of its patch and of its square, and the same three past
the threshold (hinges ``max(x − threshold, 0)``), fitted by maximum likelihood on grids whose outcomes are known —
never on the grid being evaluated. The shipped one is a *shares* calibration (:data:`SHARE_FEATURES`): it also
reads which share of its patch's and of its square's holes look good (predicted at least :data:`SHARE_MARGIN` Å
better than the threshold), a count that one badly predicted hole cannot swing as it swings a mean; for a
classifier's probabilities it reads their log-odds and the share of the patch and of the square the classifier
calls good (p ≥ 0.5, :data:`CLASSIFIER_SHARE_FEATURES`). A calibration on the means alone (``shares=False``;
cryorl's shipped one before, kept as ``benchmarks/calibrations/calibration-means.json`` for the benchmarks'
``planner-means``) uses a classifier's probability as it is. Over ten draws of the real split's predictions at
unseen quality and ten at MAE 3.2 Å, in both cost settings, the planner collects more with the shares on average
at every budget (README, At unseen prediction quality); where predictions are in-sample-good it collects 2 % less
at 480 min on the split.

The shipped calibration (``cryorl/resources/calibration.json``, :func:`fit_on_real_outcomes`) is fitted on real
outcomes: the Aldolase training split with its published predictions (in-sample for the regressor, which was
trained there) and with predictions of unseen-grid quality (:mod:`cryorl.prediction_quality`). Of the fits
tried — on the split in-sample only, at these two qualities, at five (MAE 1.97-3.2 Å), with simulated grids
added, on simulated grids only — this one led the planner to the most good exposures on the training grids (the
split at in-sample and unseen quality, simulated grids 1000-1002; 10 starts each at 120/240/480 min: +0.6 % over
the previous calibration, the others −1.1 to +0.1 %). Simulated grids do
not serve as well: their predictions relate to the outcomes differently (fitted on them, 0.46 nats on the real
split at unseen quality; fitted on the real split, 0.38), and the calibration fitted on simulated grids that cryorl
shipped before measured 0.434 nats on the unseen real grid where one fitted on the real training split measured
0.334. No fixed calibration knows how good a new grid's predictor is, so :class:`OnlineCalibration` recalibrates
it on the grid from the exposures measured so far, with the between-grid spread of such recalibrations as the
prior (:class:`OnlinePrior`). ``python benchmarks/calibration.py`` refits both and reports their log-loss.
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

__all__ = ["Calibration", "OnlinePrior", "OnlineCalibration", "FEATURES", "SHARE_FEATURES", "SHARE_MARGIN",
           "CLASSIFIER_SHARE_FEATURES", "DEFAULT_CALIBRATION", "default_calibration", "fit_on_simulated_grids",
           "fit_on_real_outcomes", "online_prior", "calibration_features", "classifier_features",
           "TRAINING_QUALITIES"]

DEFAULT_CALIBRATION = RESOURCES / "calibration.json"
FEATURES = ("bias", "score", "patch mean", "square mean", "score past threshold", "patch mean past threshold",
            "square mean past threshold")
"""The calibration's inputs, in the order of :attr:`Calibration.weights` (scores in Å)."""
SHARE_FEATURES = FEATURES + ("patch share predicted good", "square share predicted good")
"""A shares calibration's inputs: :data:`FEATURES` and the share of the hole's patch and square predicted at least
:data:`SHARE_MARGIN` Å better than the threshold."""
SHARE_MARGIN = 0.5
"""Å below the threshold a hole's prediction must be to count as looking good in :data:`SHARE_FEATURES` (5.5 Å at
6 Å). Of 4.5, 5.0, 5.5 and 6.0 Å, fitted as :func:`fit_on_real_outcomes` fits: the lowest log-loss on the real split
in-sample (fitted without it; 0.345 against 0.355-0.378), at MAE 1.9 Å and on simulated grids 90001-90003, and
within 0.003 nats of the lowest (6.0 Å) on the split's unseen-quality draws 3-9 and 10-19."""


CLASSIFIER_SHARE_FEATURES = ("bias", "log-odds", "patch share called good", "square share called good")
"""A shares calibration's inputs for a classifier's probabilities ``p``: their log-odds and the share of the hole's
patch and square with ``p ≥ 0.5`` (of 0.5, 0.6 and 0.7, the lowest log-loss on the real split's unseen-quality draws
3-9 and 10-19 as :func:`cryorl.quality.as_classifier` probabilities)."""


def _group_mean(group: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (np.bincount(group, x) / np.bincount(group))[group]


def _classifier_log_odds(atlas: Atlas) -> np.ndarray:
    p = np.clip(probability_good(atlas, CLASSIFIER_THRESHOLD), 1e-4, 1 - 1e-4)
    return np.log(p) - np.log1p(-p)


def classifier_features(atlas: Atlas) -> np.ndarray:
    """(holes, len(CLASSIFIER_SHARE_FEATURES)) inputs of a shares calibration for a classifier's probabilities."""
    called_good = (probability_good(atlas, CLASSIFIER_THRESHOLD) >= 0.5).astype(np.float64)
    z = _classifier_log_odds(atlas)
    return np.stack([np.ones_like(z), z, _group_mean(atlas.patch, called_good),
                     _group_mean(atlas.square, called_good)], axis=1)


def _logistic_fit(x: np.ndarray, y: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Maximum-likelihood weights of ``P(y) = sigmoid(x · w)``."""
    from scipy.optimize import minimize

    def loss(w):
        z = x @ w
        return np.mean(np.logaddexp(0.0, z) - y * z), x.T @ (1.0 / (1.0 + np.exp(-z)) - y) / len(y)

    return minimize(loss, start, jac=True, method="L-BFGS-B").x


def calibration_features(atlas: Atlas, threshold: float, shares: bool = False) -> np.ndarray:
    """(holes, len(FEATURES)) inputs of the calibration (``shares``: (holes, len(SHARE_FEATURES))): static,
    computed once per grid."""
    s = predicted_quality(atlas)
    patch_mean, square_mean = _group_mean(atlas.patch, s), _group_mean(atlas.square, s)
    past = [np.maximum(x - threshold, 0.0) for x in (s, patch_mean, square_mean)]
    columns = [np.ones_like(s), s, patch_mean, square_mean, *past]
    if shares:
        looks_good = (s <= threshold - SHARE_MARGIN).astype(np.float64)
        columns += [_group_mean(atlas.patch, looks_good), _group_mean(atlas.square, looks_good)]
    return np.stack(columns, axis=1)


@dataclass(frozen=True)
class OnlinePrior:
    """How far one grid may differ from the calibration: the Gaussian prior of the online update
    (:class:`OnlineCalibration`), the covariance between grids of the (bias, slope) that recalibrate the
    calibration's log-odds on a grid (``regressor_cov``) or a classifier's own (``classifier_cov``), 4 values each,
    row by row."""

    regressor_cov: tuple[float, ...]
    classifier_cov: tuple[float, ...]

    def __post_init__(self) -> None:
        for name, values in (("regressor_cov", self.regressor_cov), ("classifier_cov", self.classifier_cov)):
            matrix = np.asarray(values, dtype=np.float64)
            if matrix.shape != (4,) or not np.all(np.isfinite(matrix)) or \
                    np.linalg.eigvalsh(matrix.reshape(2, 2)).min() <= 0:
                raise ValueError(f"an online prior's {name} must be the 4 values of a positive definite 2×2 "
                                 f"matrix, got {list(values)}")


@dataclass(frozen=True)
class Calibration:
    """P(CTFMaxRes ≤ ``threshold``) = sigmoid(features · ``weights``); see the module docstring. The features are
    :data:`FEATURES`, or :data:`SHARE_FEATURES` where there are as many weights as those; a classifier's
    probabilities at 6 Å are used as they are, or through ``classifier_weights`` on
    :data:`CLASSIFIER_SHARE_FEATURES` where given. ``online``: the prior of the online update from a grid's measured
    exposures (:class:`OnlineCalibration`), where fitted."""

    weights: tuple[float, ...]
    threshold: float = 6.0
    source: str = ""
    online: OnlinePrior | None = None
    classifier_weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if len(self.weights) not in (len(FEATURES), len(SHARE_FEATURES)) or not np.all(np.isfinite(self.weights)):
            raise ValueError(f"a calibration needs {len(FEATURES)} finite weights ({', '.join(FEATURES)}) or "
                             f"{len(SHARE_FEATURES)} (those, {', '.join(SHARE_FEATURES[len(FEATURES):])}), got "
                             f"{list(self.weights)}")
        if len(self.classifier_weights) not in (0, len(CLASSIFIER_SHARE_FEATURES)) or \
                not np.all(np.isfinite(self.classifier_weights)):
            raise ValueError(f"a calibration's classifier weights are none or {len(CLASSIFIER_SHARE_FEATURES)} "
                             f"finite values ({', '.join(CLASSIFIER_SHARE_FEATURES)}), got "
                             f"{list(self.classifier_weights)}")
        if self.classifier_weights and self.threshold != CLASSIFIER_THRESHOLD:
            raise ValueError(f"classifier weights recalibrate probabilities of CTFMaxRes ≤ {CLASSIFIER_THRESHOLD:g} Å; "
                             f"this calibration is for ≤ {self.threshold:g} Å")

    @property
    def shares(self) -> bool:
        """Whether it reads the shares of the patch and square that look good (:data:`SHARE_FEATURES`)."""
        return len(self.weights) == len(SHARE_FEATURES)

    @property
    def features(self) -> tuple[str, ...]:
        """The names of its inputs, in the order of its weights."""
        return SHARE_FEATURES if self.shares else FEATURES

    def log_odds(self, atlas: Atlas) -> np.ndarray:
        """Per hole, the log-odds that it is good."""
        if not atlas.has_ctf_predictions and self.threshold == CLASSIFIER_THRESHOLD:
            if self.classifier_weights:
                return classifier_features(atlas) @ np.asarray(self.classifier_weights)
            return _classifier_log_odds(atlas)
        return calibration_features(atlas, self.threshold, self.shares) @ np.asarray(self.weights)

    def probability_good(self, atlas: Atlas) -> np.ndarray:
        """Per hole, the probability that its CTFMaxRes is ≤ the threshold (a classifier's own probability as is,
        unless ``classifier_weights`` recalibrate it)."""
        return 1.0 / (1.0 + np.exp(-self.log_odds(atlas)))

    @classmethod
    def fit_atlases(cls, atlases: list[Atlas], threshold: float = 6.0, source: str = "", shares: bool = False
                    ) -> Calibration:
        """Maximum-likelihood fit on the measured holes of grids with known outcomes (regressor predictions);
        ``shares``: on :data:`SHARE_FEATURES`."""
        rows, good = [], []
        for atlas in atlases:
            if not atlas.has_ctf_predictions:
                raise ValueError(f"{atlas.source}: a calibration is fitted on predicted CTFMaxRes values, not "
                                 "classifier probabilities (recalibrated by classifier weights, if at all)")
            measured = np.isfinite(atlas.true_ctf)
            rows.append(calibration_features(atlas, threshold, shares)[measured])
            good.append(atlas.is_good(threshold)[measured])
        x, y = np.concatenate(rows), np.concatenate(good).astype(np.float64)
        if len(y) < 100 or y.min() == y.max():
            raise ValueError(f"{len(y)} measured holes ({int(y.sum())} good) are too few to calibrate on")
        return cls(tuple(round(float(w), 6) for w in _logistic_fit(x, y, np.zeros(x.shape[1]))), float(threshold),
                   source)

    def log_loss(self, atlas: Atlas) -> float:
        """Mean negative log-likelihood of the measured holes' outcomes (nats; lower is better)."""
        measured = np.isfinite(atlas.true_ctf)
        z = self.log_odds(atlas)[measured]
        y = atlas.is_good(self.threshold)[measured]
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    def save(self, path: str | os.PathLike) -> Path:
        data = {"format": "cryorl-calibration/2", "threshold": self.threshold, "source": self.source,
                "features": list(self.features), "weights": list(self.weights)}
        if self.classifier_weights:
            data["classifier_features"] = list(CLASSIFIER_SHARE_FEATURES)
            data["classifier_weights"] = list(self.classifier_weights)
        if self.online is not None:
            data["online"] = {"regressor_cov": list(self.online.regressor_cov),
                              "classifier_cov": list(self.online.classifier_cov)}
        return atomic_write_text(path, json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error.msg})") from None
        if data.get("format") != "cryorl-calibration/2" or data.get("features") not in (list(FEATURES),
                                                                                        list(SHARE_FEATURES)):
            raise ValueError(f"{path}: not a cryorl calibration of this version (format {data.get('format')!r})")
        if len(data.get("weights", ())) != len(data["features"]):
            raise ValueError(f"{path}: {len(data.get('weights', ()))} weights for {len(data['features'])} features")
        if ("classifier_weights" in data or "classifier_features" in data) and \
                data.get("classifier_features") != list(CLASSIFIER_SHARE_FEATURES):
            raise ValueError(f"{path}: its classifier weights are not for {', '.join(CLASSIFIER_SHARE_FEATURES)}")
        online = data.get("online")
        try:
            online = OnlinePrior(tuple(online["regressor_cov"]), tuple(online["classifier_cov"])) if online else None
        except (KeyError, TypeError) as error:
            raise ValueError(f"{path}: its online prior lacks {error}") from None
        if "classifier_features" in data and not isinstance(data.get("classifier_weights"), list):
            raise ValueError(f"{path}: it names classifier features but has no list of classifier weights")
        try:
            return cls(tuple(data["weights"]), float(data["threshold"]), data.get("source", ""), online,
                       tuple(data.get("classifier_weights", ())))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None


FIT_QUALITIES = ("in-sample", "unseen")
"""Prediction qualities of the real split the shipped calibration's weights are fitted on."""
TRAINING_QUALITIES = ("in-sample", 2.2, "unseen", 2.9, 3.2)
"""Prediction qualities (Å of MAE, or names) of the training grids its online prior is measured on: the range a new
grid may have."""
PRIOR_SEEDS = range(1000, 1020)
"""Seeds of the simulated grids that, beside the real split, measure how far grids differ (never evaluated on)."""


def _recalibration(z: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Maximum-likelihood (bias, slope) of ``sigmoid(b + a z)`` for outcomes ``good``."""
    return _logistic_fit(np.stack([np.ones_like(z), z], axis=1), good.astype(np.float64), np.array([0.0, 1.0]))


def _classifier_weights(atlases: list[Atlas]) -> tuple[float, ...]:
    """Weights on :data:`CLASSIFIER_SHARE_FEATURES` fitted on the measured holes of grids with regressor
    predictions, turned into a classifier's probabilities (:func:`cryorl.quality.as_classifier`)."""
    from cryorl.quality import as_classifier

    x = np.concatenate([classifier_features(as_classifier(a))[np.isfinite(a.true_ctf)] for a in atlases])
    y = np.concatenate([a.is_good(CLASSIFIER_THRESHOLD)[np.isfinite(a.true_ctf)] for a in atlases])
    start = np.zeros(x.shape[1])
    start[1] = 1.0                                                       # the classifier's own log-odds
    return tuple(round(float(w), 6) for w in _logistic_fit(x, y.astype(np.float64), start))


def online_prior(calibration: Calibration, grids: list[Atlas]) -> OnlinePrior:
    """The prior of the online update for ``calibration``: on each grid (regressor predictions, known outcomes) the
    (bias, slope) that recalibrate its log-odds, and those of a two-class classifier's
    (:func:`cryorl.quality.as_classifier`); their covariances across the grids."""
    from cryorl.quality import as_classifier

    def covariance(rows) -> tuple[float, ...]:
        return tuple(float(v) for v in np.round(np.cov(np.asarray(rows).T).ravel(), 6))

    threshold = calibration.threshold
    measured = [np.isfinite(g.true_ctf) for g in grids]
    regressor = [_recalibration(calibration.log_odds(g)[m], g.is_good(threshold)[m]) for g, m in zip(grids, measured)]
    classifier = regressor                                      # a classifier's probabilities are of 6 Å only
    if threshold == CLASSIFIER_THRESHOLD:
        classifier = [_recalibration(calibration.log_odds(as_classifier(g))[m], g.is_good(threshold)[m])
                      for g, m in zip(grids, measured)]
    return OnlinePrior(covariance(regressor), covariance(classifier))


def _training_simulations(seeds: range, qualities) -> list[Atlas]:
    from cryorl.synth import simulate_atlas

    return [simulate_atlas(s, prediction_quality=qualities[i % len(qualities)]) for i, s in enumerate(seeds)]


def fit_on_real_outcomes(real: Atlas, threshold: float = 6.0, qualities=FIT_QUALITIES, seed: int = 1,
                         prior_qualities=TRAINING_QUALITIES, prior_seeds: range = PRIOR_SEEDS, shares: bool = True
                         ) -> Calibration:
    """The shipped calibration: weights fitted on the measured outcomes of a real split with regressor
    predictions at each of ``qualities`` (its own, and unseen-quality ones: :mod:`cryorl.prediction_quality`,
    seeded), and the online prior (:func:`online_prior`) measured on the split at each of ``prior_qualities`` and
    on simulated grids of ``prior_seeds`` cycling through them, on :data:`SHARE_FEATURES` (and, at 6 Å, classifier
    weights fitted on the same grids as :func:`cryorl.quality.as_classifier` probabilities). ``shares=False``: the
    calibration on the means alone, shipped before the shares one."""
    from cryorl.prediction_quality import with_prediction_quality

    grids = [with_prediction_quality(real, q, seed) for q in qualities]
    fitted = Calibration.fit_atlases(grids, threshold, shares=shares)
    if shares and threshold == CLASSIFIER_THRESHOLD:
        fitted = Calibration(fitted.weights, fitted.threshold, classifier_weights=_classifier_weights(grids))
    prior_grids = [with_prediction_quality(real, q, seed) for q in prior_qualities]
    prior = online_prior(fitted, prior_grids + _training_simulations(prior_seeds, prior_qualities))
    return Calibration(fitted.weights, float(threshold),
                       ("shares of the patch and square; " if shares else "") +
                       f"real outcomes: {Path(real.source).name} with its predictions at "
                       f"{', '.join(map(str, qualities))} (seed {seed}); online prior from it at "
                       f"{', '.join(map(str, prior_qualities))} and simulated grids {prior_seeds.start}-"
                       f"{prior_seeds.stop - 1}", prior, fitted.classifier_weights)


def fit_on_simulated_grids(threshold: float = 6.0, seeds: range = range(1000, 1020),
                           prediction_quality: str | float | None = None) -> Calibration:
    """A calibration fitted on simulated grids of seeds never used for evaluation (default 1000-1019), at one
    prediction quality or (None) cycling through :data:`TRAINING_QUALITIES`, with the online prior measured on the
    same grids. (cryorl's calibration before the real-outcome fit is ``prediction_quality="in-sample"``.)"""
    qualities = TRAINING_QUALITIES if prediction_quality is None else (prediction_quality,)
    grids = _training_simulations(seeds, qualities)
    fitted = Calibration.fit_atlases(grids, threshold)
    label = "at " + (", ".join(map(str, qualities)))
    return Calibration(fitted.weights, float(threshold),
                       f"simulated grids, seeds {seeds.start}-{seeds.stop - 1}, {label}", online_prior(fitted, grids))


@lru_cache(maxsize=8)
def default_calibration(threshold: float = 6.0) -> Calibration:
    """The shipped calibration at 6 Å; for another threshold, one fitted on simulated grids now (a few seconds)."""
    if threshold == 6.0 and DEFAULT_CALIBRATION.exists():
        return Calibration.load(DEFAULT_CALIBRATION)
    return fit_on_simulated_grids(threshold)


class OnlineCalibration:
    """The calibration of one grid, updated from its measured exposures (Bayes, with the shipped fit as prior).

    Hole ``i`` is good with log-odds ``b + a · z_i``: ``z`` the shipped calibration's log-odds (for classifier
    probabilities the classifier's own, or their recalibration by ``classifier_weights``, so that ``1 / a`` is an
    online temperature) and ``(b, a)`` this grid's
    recalibration — how reliable its predictions are here — with prior mean (0, 1), the shipped fit as it is, and
    the between-grid covariance of :class:`OnlinePrior`. :meth:`update` moves ``(b, a)`` to the posterior mode
    given the measured holes by Newton steps (warm-started, halved where they overshoot; each a pass over the
    measured holes and a 2 × 2 solve). With nothing measured the probabilities are the shipped calibration's.

    A patch's and a square's own effects (``+ u_patch + v_square``, from measured neighbours) were tried and are
    not used: along the planner's paths the measured holes of a patch are its best-looking ones, and effects
    learnt from them made the log-loss of the patch's remaining holes worse (0.380 → 0.386-0.413 nats on the
    training split at unseen quality for standard deviations 0.3-1.0, 0.445 → 0.445-0.457 on a simulated grid),
    with or without undoing the calibration's averaging over patches.
    """

    def __init__(self, calibration: Calibration, atlas: Atlas, newton_steps: int = 3) -> None:
        prior = calibration.online
        if prior is None:
            raise ValueError(f"calibration {calibration.source!r} has no online prior; refit it with "
                             "benchmarks/calibration.py")
        self.classifier = not atlas.has_ctf_predictions and calibration.threshold == CLASSIFIER_THRESHOLD
        cov = prior.classifier_cov if self.classifier else prior.regressor_cov
        self.x = np.stack([np.ones(len(atlas)), calibration.log_odds(atlas)], axis=1)
        self.prior_mean = np.array([0.0, 1.0])
        self.prior_precision = np.linalg.inv(np.asarray(cov).reshape(2, 2))
        self.newton_steps = newton_steps
        self.reset()

    def reset(self) -> None:
        """Back to the prior (nothing measured)."""
        self.w = self.prior_mean.copy()
        self.n_measured = 0

    @property
    def temperature(self) -> float:
        """``1 / a``: above 1 where this grid's predictions have proved over-confident."""
        return 1.0 / self.w[1] if self.w[1] > 0 else float("inf")

    def log_odds(self) -> np.ndarray:
        """Per hole, the log-odds that it is good under the current posterior mode."""
        return self.x @ self.w

    def probability_good(self) -> np.ndarray:
        """Per hole, the probability that its CTFMaxRes is ≤ the threshold."""
        return 1.0 / (1.0 + np.exp(-self.log_odds()))

    def update(self, holes: np.ndarray, good: np.ndarray) -> None:
        """Condition on the outcomes ``good`` (bool) of the measured ``holes`` (indices: every hole measured so
        far, not only the new ones)."""
        holes = np.asarray(holes, dtype=np.int64)
        y = np.asarray(good, dtype=np.float64)
        self.n_measured = len(holes)
        if not len(holes):
            self.reset()
            return
        x = self.x[holes]

        def log_posterior(w: np.ndarray) -> float:
            z, d = x @ w, w - self.prior_mean
            return float(y @ z - np.logaddexp(0.0, z).sum() - 0.5 * d @ self.prior_precision @ d)

        for _ in range(self.newton_steps):
            q = 1.0 / (1.0 + np.exp(-(x @ self.w)))
            gradient = x.T @ (y - q) - self.prior_precision @ (self.w - self.prior_mean)
            hessian = (x * (q * (1.0 - q))[:, None]).T @ x + self.prior_precision
            step, current = np.linalg.solve(hessian, gradient), log_posterior(self.w)
            for _ in range(20):                          # halve a step that overshoots (far-off log-odds)
                if log_posterior(self.w + step) >= current:
                    self.w = self.w + step
                    break
                step = step / 2
