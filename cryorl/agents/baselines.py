"""Non-learned policies. Each rule is vectorized over holes and patches (``np.bincount``), O(holes) per step.

Notation: *predicted good* means predicted CTFMaxRes ≤ threshold; a *move's cost* is the environment's switch cost
(minutes) from the current hole. With classifier predictions (probability of CTFMaxRes < 6 Å) every rule reads
the CTFMaxRes-equivalent of the probability (:func:`cryorl.quality.predicted_quality`: predicted good ⇔ p ≥ 0.5
at the 6 Å threshold).

- ``random``: uniform over valid holes.
- ``predict-rank``: the unvisited hole with the lowest predicted CTFMaxRes; ties go to the cheapest move, then the
  lowest index.
- ``greedy-local``: while the current patch has predicted-good unvisited holes, take its best-predicted one;
  otherwise move to the patch with the most predicted-good unvisited holes per minute of the move's cost (ties:
  cheaper move, then lower mean prediction) and take its best-predicted hole; with no predicted-good hole left
  anywhere, fall back to ``predict-rank``.
- ``greedy-2t`` (two-threshold greedy-local): stay in the current patch while it has unvisited holes predicted
  ≤ ``t_stay`` (best-predicted first); otherwise move to the patch with the most unvisited holes predicted
  ≤ ``t_enter`` per minute of the move (ties as greedy-local) and take its best-predicted hole; with no hole
  predicted ≤ ``t_enter`` left, ``predict-rank``. With both thresholds at the environment's threshold it is
  greedy-local. The thresholds (Å at a 6 Å threshold, moved with it) are tuned on training grids per cost setting
  by ``benchmarks/tune_rules.py`` and shipped in ``cryorl/resources/rules.json``; costs without a tuned setting
  take the tuned setting whose costs are closest in ratio.
- ``snowball``: greedy-local on a belief updated by exposures: a hole counts as good when
  ``q = (κ·p + g_patch + λ·(g_square − g_patch)) / (κ + n_patch + λ·(n_square − n_patch)) ≥ 0.5``, where
  ``p = sigmoid((threshold − predicted) / τ)`` is the prior from the image, ``g``/``n`` count good/all *measured*
  exposures in the hole's patch and square, κ = 16 (prior weight), λ = 0.1 (weight of the rest of the square),
  τ = 0.5 Å; within a patch the highest ``q`` goes first. (Chosen on simulated grids; smaller κ trusts exposures
  more and did worse there, as the image predictions already carry most of what neighbours reveal.)
- ``oracle``: greedy-local on the *true* CTFMaxRes — a reference, not deployable.
- ``human-trace``: holes in a recorded order (e.g. the session's ``timestamps.csv``), skipping holes absent from
  the grid or already exposed; it starts at the trace's first hole; when the trace is used up, ``predict-rank``.
  A trace with fewer than two holes on the grid is refused (it would be predict-rank under a human's name).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from cryorl.agents.base import Policy
from cryorl.agents.registry import register_policy, register_prefix
from cryorl.atlas import clip_ctf
from cryorl.costs import switch_levels
from cryorl.human import HumanTrace, load_human_trace
from cryorl.quality import predicted_quality
from cryorl.resources import RESOURCES

__all__ = ["RandomPolicy", "PredictRankPolicy", "GreedyLocalPolicy", "TwoThresholdGreedyPolicy", "SnowballPolicy",
           "OraclePolicy", "HumanTracePolicy", "GridPolicy", "RULES_FILE", "tuned_thresholds"]

RULES_FILE = RESOURCES / "rules.json"
"""The shipped thresholds of the two-threshold rule, per cost setting (``benchmarks/tune_rules.py``)."""


class GridPolicy(Policy):
    """Shared episode bookkeeping: the grid's arrays, costs and threshold, and move costs from the current hole."""

    def reset(self, env) -> None:
        self.env = env
        atlas = env.atlas
        self.n = len(atlas)
        self.patch, self.square, self.tile = atlas.patch, atlas.square, atlas.tile
        self.n_patches = atlas.n_patches
        self.costs = env.costs.as_array()
        self.threshold = env.threshold
        self.predicted = predicted_quality(atlas)     # Å, or the equivalent of classifier probabilities

    def move_costs(self) -> np.ndarray:
        """Minutes to move from the current hole to every hole."""
        c = self.env.current_hole
        return self.costs[switch_levels(self.tile, self.square, self.patch, c, slice(None))]

    def _rank(self, score: np.ndarray, valid: np.ndarray, move: np.ndarray) -> int:
        """The valid hole with the lowest score, ties by cheaper move, then index."""
        candidates = np.flatnonzero(valid)
        order = np.lexsort((candidates, move[candidates], score[candidates]))
        return int(candidates[order[0]])


class RandomPolicy(Policy):
    name = "random"

    def __init__(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, observation, action_mask) -> int:
        return int(self.rng.choice(np.flatnonzero(action_mask)))


class PredictRankPolicy(GridPolicy):
    name = "predict-rank"

    def act(self, observation, action_mask) -> int:
        valid = np.asarray(action_mask[: self.n], dtype=bool)
        return self._rank(self.predicted, valid, self.move_costs())


class GreedyLocalPolicy(GridPolicy):
    name = "greedy-local"

    def _scores(self, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-hole score (lower is better) and which holes count as good."""
        return self.predicted, self.predicted <= self.threshold

    def _stay_and_enter(self, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-hole score (lower is better), the holes worth staying for and the holes worth entering a patch for."""
        score, good = self._scores(valid)
        return score, good, good

    def act(self, observation, action_mask) -> int:
        valid = np.asarray(action_mask[: self.n], dtype=bool)
        score, stay, enter = self._stay_and_enter(valid)
        move = self.move_costs()
        here = valid & stay & (self.patch == self.patch[self.env.current_hole])
        if here.any():
            return self._rank(score, here, move)
        candidates = valid & enter
        if not candidates.any():
            return self._rank(score, valid, move)
        count = np.bincount(self.patch, weights=candidates, minlength=self.n_patches)
        patch_move = np.full(self.n_patches, np.inf)
        np.minimum.at(patch_move, self.patch, move)
        mean_score = np.bincount(self.patch, weights=score * candidates, minlength=self.n_patches) / \
            np.maximum(count, 1)
        rate = count / patch_move
        patches = np.flatnonzero(count > 0)
        best = patches[np.lexsort((mean_score[patches], patch_move[patches], -rate[patches]))[0]]
        return self._rank(score, candidates & (self.patch == best), move)


@lru_cache(maxsize=1)
def _shipped_rules() -> dict:
    data = json.loads(RULES_FILE.read_text())
    if data.get("format") != "cryorl-rules/1":
        raise ValueError(f"{RULES_FILE}: not a cryorl rules file of this version (format {data.get('format')!r})")
    return data


def tuned_thresholds(costs, rule: str = "greedy-2t") -> dict:
    """The shipped tuned setting of ``rule`` for ``costs`` (a :class:`~cryorl.costs.CollectionCosts`): the one
    tuned for these costs, else the one whose costs are closest in ratio (the four minutes' log-ratios to the
    tuned costs, less their mean: a setting with every cost 1.5 times another's is that one's)."""
    settings = _shipped_rules()[rule]
    if costs.name in settings:
        return settings[costs.name]
    from cryorl.costs import get_costs

    def distance(name: str) -> float:
        log_ratio = np.log(get_costs(name).as_array() / costs.as_array())
        return float(np.abs(log_ratio - log_ratio.mean()).sum())

    return settings[min(settings, key=distance)]


class TwoThresholdGreedyPolicy(GreedyLocalPolicy):
    """Two-threshold greedy-local (module docstring). ``t_stay``, ``t_enter``: predicted CTFMaxRes (Å) at a 6 Å
    threshold, moved with the environment's threshold; None: the shipped tuned values for the environment's costs
    (:func:`tuned_thresholds`)."""

    name = "greedy-2t"

    def __init__(self, t_stay: float | None = None, t_enter: float | None = None) -> None:
        self.t_stay, self.t_enter = t_stay, t_enter

    def reset(self, env) -> None:
        super().reset(env)
        tuned = tuned_thresholds(env.costs) if self.t_stay is None or self.t_enter is None else {}
        shift = self.threshold - tuned.get("threshold", 6.0)
        self.stay_below = (self.t_stay if self.t_stay is not None else tuned["t_stay"]) + shift
        self.enter_below = (self.t_enter if self.t_enter is not None else tuned["t_enter"]) + shift

    def _stay_and_enter(self, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.predicted, self.predicted <= self.stay_below, self.predicted <= self.enter_below


class OraclePolicy(GreedyLocalPolicy):
    """Greedy-local on the true CTFMaxRes (an upper reference, not deployable)."""

    name = "oracle"

    def reset(self, env) -> None:
        super().reset(env)
        self.truth = clip_ctf(env.atlas.true_ctf)

    def _scores(self, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.truth, self.truth <= self.threshold


class SnowballPolicy(GreedyLocalPolicy):
    name = "snowball"

    def __init__(self, prior_weight: float = 16.0, square_weight: float = 0.1, temperature: float = 0.5) -> None:
        self.prior_weight = prior_weight
        self.square_weight = square_weight
        self.temperature = temperature

    def reset(self, env) -> None:
        super().reset(env)
        self.prior = 1.0 / (1.0 + np.exp(-(self.threshold - self.predicted) / self.temperature))
        self.truth_good = env.atlas.is_good(self.threshold)

    def belief(self, visited: np.ndarray) -> np.ndarray:
        """Probability that each hole is good, given the image prior and the exposures measured so far."""
        measured_good = visited & self.truth_good
        g_patch = np.bincount(self.patch, weights=measured_good, minlength=self.n_patches)[self.patch]
        n_patch = np.bincount(self.patch, weights=visited, minlength=self.n_patches)[self.patch]
        g_square = np.bincount(self.square, weights=measured_good)[self.square]
        n_square = np.bincount(self.square, weights=visited)[self.square]
        k, lam = self.prior_weight, self.square_weight
        return (k * self.prior + g_patch + lam * (g_square - g_patch)) / (k + n_patch + lam * (n_square - n_patch))

    def _scores(self, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = self.belief(np.asarray(self.env.visited))
        return -q, q >= 0.5


class HumanTracePolicy(GridPolicy):
    name = "human-trace"

    def __init__(self, trace: HumanTrace | Sequence[str] | str | os.PathLike, name: str | None = None) -> None:
        """``trace``: a :class:`cryorl.human.HumanTrace`, hole names in collection order, or a trace file
        (``timestamps.csv``, CSV, JSON or one name per line: :func:`cryorl.human.load_human_trace`)."""
        if isinstance(trace, (str, os.PathLike)):
            trace = load_human_trace(trace)
        elif not isinstance(trace, HumanTrace):
            trace = HumanTrace("human-trace", tuple(trace))
        self.trace = trace
        self.name = name or ("human-trace" if trace.name in ("timestamps", "human-trace") else trace.name)

    def reset(self, env) -> None:
        super().reset(env)
        self.order = self.trace.on(env.atlas)["hole"].to_numpy()
        if len(self.order) < 2:
            raise ValueError(f"human trace {self.trace.name!r} has {len(self.order)} of its {len(self.trace)} holes "
                             f"on this grid ({env.atlas.source or 'the grid'}): there is no human path to replay")
        self.cursor = 0

    def start_hole(self, env) -> int | None:
        return int(self.order[0]) if len(self.order) else None

    def act(self, observation, action_mask) -> int:
        valid = np.asarray(action_mask[: self.n], dtype=bool)
        while self.cursor < len(self.order) and not valid[self.order[self.cursor]]:
            self.cursor += 1
        if self.cursor < len(self.order):
            return int(self.order[self.cursor])
        return self._rank(self.predicted, valid, self.move_costs())


register_policy("random", lambda seed: RandomPolicy(seed=seed), "a uniformly random unexposed hole (seeded)")
register_policy("predict-rank", lambda seed: PredictRankPolicy(), "the lowest predicted CTFMaxRes anywhere")
register_policy("greedy-local", lambda seed: GreedyLocalPolicy(),
                "stay in the patch while it has predicted-good holes, else the patch with most per minute")
register_policy("greedy-2t", lambda seed: TwoThresholdGreedyPolicy(),
                "greedy-local with two thresholds (stay, enter) tuned on training grids")
register_policy("snowball", lambda seed: SnowballPolicy(), "greedy-local on a belief updated by measured exposures")
register_prefix("human-trace:", lambda path, seed: HumanTracePolicy(Path(path)))
register_policy("oracle", lambda seed: OraclePolicy(), "greedy-local on the true CTFMaxRes: a bound, not an agent",
                benchmark=False, needs_truth=True)
