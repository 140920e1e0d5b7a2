"""The budget-aware planner: calibrated probabilities and a plan for the time left, re-made before every move.

Each hole has a probability ``p`` of being good (:mod:`cryorl.calibration`). A minute is given a price ``λ``
(good exposures per minute), and under that price the plan takes

- in a patch, every unexposed hole with ``p ≥ λ·c_hole`` (each costs one hole move);
- a patch, if what its holes earn exceeds ``λ`` times their minutes plus its entry (a patch move);
- a square, if its patches' net value exceeds ``λ·(c_square − c_patch)``, the premium of entering it;
- an atlas tile, likewise with ``λ·(c_tile − c_square)``;

with nothing charged for entering the patch, square and tile the microscope is already in. A patch, square or tile
away from the microscope whose chosen holes need more than the time left is valued as the part of it that fits (its
gain scaled by the minutes left after its entry, against the price of all the time left): otherwise a large far
tile, valued whole at a rate a short session cannot reach, outbids what is near at the price that fills the time
(on the 2022 classifier proxy at 120 min the planner left a square of p ≈ 0.9 holes for a tile 20 minutes away
with 38 minutes to go). With the switch costs of
a hierarchy (hole < patch < square < tile) a depth-first tour visits each chosen patch, square and tile once, so
these sums are exactly the plan's minutes. ``λ`` is the highest price at which the plan fills the time left
(bisection: the Lagrangian relaxation of the knapsack over the tile → square → patch tree). Entering a patch,
square or tile is lumpy, so that plan may run over by an entry; it is then cut at the end, as the episode is,
rather than left short of a far, good patch that does not fit whole (following only the plan that fits made some
120-minute episodes on a simulated grid collect 55 good exposures where the others collected 85, ending in poor
holes near the microscope). The next hole is the best one of the current patch if the plan keeps it, else the
plan's first stop: the chosen patch of the current square with the most expected good exposures per minute, else
the best chosen square of the current tile, else the best chosen tile. Where the plan that runs over and the plan
that fits disagree on the first stop (a far patch that does not fit whole, or marginal holes next to the
microscope that would push good ones out of the time), each first stop is valued as its holes plus the plan that
fits the time after it, and the better one is taken. With less than one hole move of time left, the last move
(which still earns) goes to the most probable hole anywhere.

The probabilities come from the shipped calibration (fitted on real outcomes, :mod:`cryorl.calibration`: the
hole's prediction, its patch's and square's mean and the share of their holes that look good; for a classifier's
probabilities, their log-odds and the share of the patch and square it calls good). The
``planner-online`` variant (``online=True``) recalibrates them on the grid before every move from the exposures
measured so far (:class:`~cryorl.calibration.OnlineCalibration`: a Bayesian update of the calibration's bias and
slope, or a classifier's temperature, with the shipped fit as the prior). Every step is a few ``np.bincount``
passes per bisection round (and, online, one Newton step over the measured holes).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cryorl.agents.baselines import GridPolicy
from cryorl.agents.registry import register_policy
from cryorl.calibration import Calibration, OnlineCalibration, default_calibration

__all__ = ["PlannerPolicy", "OnlinePlannerPolicy", "Decision"]

_EPS = 1e-6


class Decision(NamedTuple):
    """One decision of the planner: the ``hole`` it goes to, which holes its plan for the time left takes
    (``in_plan``, a boolean per hole) and the ``price`` of a minute (expected good exposures) behind that plan
    (``inf`` on the last move, where only the hole counts)."""

    hole: int
    in_plan: np.ndarray
    price: float


class PlannerPolicy(GridPolicy):
    """The budget-aware planner (module docstring). Deployable: it reads the predictions and the time left only.

    ``calibration``: the :class:`~cryorl.calibration.Calibration` that turns predictions into probabilities
    (default: the shipped one, or one fitted on simulated grids for a threshold other than 6 Å); ``online``:
    recalibrate it from this grid's measured exposures (``planner-online``; needs a calibration with an online
    prior).
    """

    name = "planner"

    def __init__(self, calibration: Calibration | None = None, bisection_steps: int = 24, online: bool = False
                 ) -> None:
        self.calibration = calibration
        self.bisection_steps = bisection_steps
        self.online = online
        if online:
            self.name = "planner-online"

    def reset(self, env) -> None:
        super().reset(env)
        atlas = env.atlas
        calibration = self.calibration if self.calibration is not None else default_calibration(env.threshold)
        if calibration.threshold != env.threshold:
            raise ValueError(f"the planner's calibration is for CTFMaxRes ≤ {calibration.threshold:g} Å but the "
                             f"environment counts ≤ {env.threshold:g} Å as good; fit one for that threshold "
                             "(cryorl.calibration.fit_on_real_outcomes(split, threshold=T) on a split whose outcomes "
                             "are known, or fit_on_simulated_grids(T))")
        self.p = calibration.probability_good(atlas)
        self._grid = OnlineCalibration(calibration, atlas) if self.online else None
        self._good = atlas.is_good(env.threshold)
        self._measured = -1
        self._price: float | None = None             # the last decision's price: where the next search starts
        self.patch_square = np.zeros(atlas.n_patches, np.int64)
        self.patch_square[atlas.patch] = atlas.square
        self.square_tile = np.zeros(atlas.n_squares, np.int64)
        self.square_tile[atlas.square] = atlas.tile
        self.n_squares, self.n_tiles = atlas.n_squares, atlas.n_tiles
        self._patch_in_square = np.zeros((atlas.n_patches, atlas.n_squares))
        self._patch_in_square[np.arange(atlas.n_patches), self.patch_square] = 1.0
        self._square_in_tile = np.zeros((atlas.n_squares, atlas.n_tiles))
        self._square_in_tile[np.arange(atlas.n_squares), self.square_tile] = 1.0

    # ------------------------------------------------------------------------------------------ the plan
    def _plans_at(self, prices: list[float], p: np.ndarray, valid: np.ndarray, here: tuple[int, int, int],
                  time_left: float) -> list[tuple]:
        """The plan under each of several ascending prices of a minute: per patch/square/tile whether it is chosen,
        its expected good exposures and minutes, and the plan's total minutes."""
        price = np.asarray(prices, dtype=float)
        *levels, total = self._choose(price[:, None], *self._cleared(price, p, valid), here, time_left)
        return [(*(tuple(a[row] for a in level) for level in levels), float(total[row])) for row in range(len(price))]

    def _choose(self, price: np.ndarray, k: np.ndarray, gain: np.ndarray, here: tuple[int, int, int],
                time_left: float):
        """The patches, squares and tiles chosen at each price of ``price`` (shape (prices, 1)) from the holes each
        patch has clearing that price's bar (``k``, their expected good exposures ``gain``; (prices, patches)):
        ``(on, gain, minutes)`` per level and the total minutes, one row per price. A patch, square or tile away
        from the microscope that needs more than ``time_left`` is valued as the part that fits (its gain scaled
        by the minutes left after its entry), so a far lump a short session cannot finish does not outbid what
        is near at the price that fills the time."""
        c0, c1, c2, c3 = self.costs
        current_patch, current_square, current_tile = here

        def chosen(gain, minutes, premium):
            value = gain - price * minutes
            too_long = minutes > time_left
            if too_long.any():                                       # the part that fits after the entry
                fits = gain * (np.clip(time_left - premium, 0.0, None) / np.maximum(minutes - premium, _EPS))
                value = np.where(too_long, fits - price * time_left, value)
            return (gain > 0) & (value > -_EPS)

        minutes = k * c0 + (c1 - c0) * (k > 0)                       # the first hole of a patch is a patch move
        minutes[:, current_patch] = k[:, current_patch] * c0
        premium = np.full(self.n_patches, c1 - c0)
        premium[current_patch] = 0.0
        patch_on = chosen(gain, minutes, premium)
        square_gain = (gain * patch_on) @ self._patch_in_square                # group sums as products with
        square_minutes = (minutes * patch_on) @ self._patch_in_square + (c2 - c1)   # one-hot membership
        square_minutes[:, current_square] -= c2 - c1
        premium = np.full(self.n_squares, c2 - c1)
        premium[current_square] = 0.0
        square_on = chosen(square_gain, square_minutes, premium)
        tile_gain = (square_gain * square_on) @ self._square_in_tile
        tile_minutes = (square_minutes * square_on) @ self._square_in_tile + (c3 - c2)
        tile_minutes[:, current_tile] -= c3 - c2
        premium = np.full(self.n_tiles, c3 - c2)
        premium[current_tile] = 0.0
        tile_on = chosen(tile_gain, tile_minutes, premium)
        return (patch_on, gain, minutes), (square_on, square_gain, square_minutes), \
            (tile_on, tile_gain, tile_minutes), (tile_minutes * tile_on).sum(axis=1)

    def plan(self, p: np.ndarray, valid: np.ndarray, time_left: float, here: tuple[int, int, int] | None = None,
             guess: float | None = None):
        """The plans for ``time_left`` minutes around the price of a minute at which they fill the time: the plan
        that fits (the lowest price whose plan fits) and the plan just past it (the highest price whose plan runs
        over), each as ``(plan, price)`` (:meth:`_plans_at`). Holes divide the time finely but entering a patch,
        square or tile does not, so the two can differ by a far, good patch that does not fit whole.

        Prices are searched on a lattice of ``2**bisection_steps`` steps up to the best hole's, 64 at a time (one
        vectorized :meth:`_totals` each). ``guess`` (the last decision's price: it rarely moves far between moves)
        only changes where the search looks first: the first round tries the lattice points around it, 64 steps
        apart. That window holds the answer in 87-89 % of the plans on the 2022 and 2023 proxies (two rounds
        instead of four; a miss takes five). Where the plan's minutes fall as the price rises, the answer does not
        depend on where the search starts. Valuing a far lump by what fits can make them rise again over a narrow
        range (a lump a little too long, valued by its best part, is chosen once a higher price trims its worst
        holes); where two prices fill the time, the search returns the one it meets first, so a guess keeps the
        plan near the last decision's. On the 50 starts of the 2022 proxy this changed one state, reached in 4
        episodes at 360 min (149.8 → 149.2 good exposures there; every other budget and grid within ±0.2, the
        20-start robustness grids within ±0.7)."""
        if here is None:
            c = self.env.current_hole
            here = (int(self.patch[c]), int(self.square[c]), int(self.tile[c]))
        top = float(p[valid].max(initial=0.0)) / self.costs[0] + _EPS
        cells = 1 << self.bisection_steps
        lo, hi = 0, cells                                 # the price at ``lo`` runs over; at ``top`` nothing is taken
        if guess is not None and 0.0 < guess < top:
            centre = int(round(guess / top * cells))
            points = np.unique(np.clip(centre + 64 * np.arange(-31, 33), 1, cells - 1))
        else:
            points = np.arange(-(-cells // 64), cells, -(-cells // 64))
        points = np.concatenate([[0], points])            # the first round also tries price 0: does everything fit?
        while True:
            totals = self._totals(points * (top / cells), p, valid, here, time_left)
            if points[0] == 0:
                if totals[0] <= time_left:                                   # everything worth anything fits
                    everything = self._plans_at([0.0], p, valid, here, time_left)[0]
                    return (everything, 0.0), (everything, 0.0)
                points, totals = points[1:], totals[1:]
            fit = np.flatnonzero(totals <= time_left)
            if len(fit):
                hi = int(points[fit[0]])
                lo = int(points[fit[0] - 1]) if fit[0] > 0 else lo
            else:
                lo = int(points[-1])
            if hi - lo <= 1:
                break
            step = -(-(hi - lo) // 64)
            points = np.arange(lo + step, hi, step)
        fit_price, over_price = hi * (top / cells), lo * (top / cells)
        over, fits = self._plans_at([over_price, fit_price], p, valid, here, time_left)
        return (fits, fit_price), (over, over_price)

    def _totals(self, prices: np.ndarray, p: np.ndarray, valid: np.ndarray, here: tuple[int, int, int],
                time_left: float):
        """The plan's total minutes at each of several ascending prices at once (:meth:`_plans_at`'s last item)."""
        return self._choose(prices[:, None], *self._cleared(prices, p, valid), here, time_left)[3]

    def _cleared(self, prices: np.ndarray, p: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per ascending price and patch (prices, patches): how many valid holes clear the price's bar
        ``price·c_hole``, and their expected good exposures; every price counted in one pass."""
        k_prices = len(prices)
        probabilities, patches = p[valid], self.patch[valid]
        bars = prices * self.costs[0]
        cleared = np.searchsorted(bars, probabilities, side="right")         # how many bars each hole clears
        cells = (k_prices - cleared) * self.n_patches + patches               # rows: bars not cleared
        size = (k_prices + 1) * self.n_patches

        def taken(weights: np.ndarray | None) -> np.ndarray:
            per_row = np.bincount(cells, weights, size).reshape(k_prices + 1, self.n_patches).cumsum(axis=0)
            return per_row[k_prices - 1::-1]                   # (prices, patches): holes clearing each price's bar

        return taken(None), taken(probabilities)

    # ------------------------------------------------------------------------------------------ acting
    def act(self, observation, action_mask) -> int:
        return self.decide(np.asarray(action_mask[: self.n], dtype=bool)).hole

    def learn(self) -> None:
        """Update the probabilities from the exposures measured so far (the online calibration), if any are new."""
        if self._grid is None:
            return
        measured = np.flatnonzero(np.asarray(self.env.visited))
        if len(measured) != self._measured:
            self._grid.update(measured, self._good[measured])
            self.p = self._grid.probability_good()
            self._measured = len(measured)

    def decide(self, valid: np.ndarray) -> Decision:
        """The next hole among ``valid`` ones, with the plan it follows (see :class:`Decision`)."""
        self.learn()
        p = self.p
        time_left = self.env.episode_budget - self.env.elapsed
        move = self.move_costs()
        if time_left < self.costs[0]:                                # the last move: it earns wherever it goes
            return Decision(self._rank(-p, valid, move), np.zeros(self.n, bool), np.inf)
        (fits, fit_price), (over, over_price) = self.plan(p, valid, time_left, guess=self._price)
        self._price = fit_price
        first = self._next_patch(*fits[:3])
        second = self._next_patch(*over[:3])
        plan, price = (over, over_price) if second >= 0 else (fits, fit_price)
        if first != second and first >= 0 and second >= 0:           # a far patch that does not fit whole
            if self._value_of_going(first, fit_price, p, valid, move, time_left) >= \
                    self._value_of_going(second, over_price, p, valid, move, time_left):
                plan, price = fits, fit_price
            target = first if plan is fits else second
        else:
            target = max(first, second)
        if target < 0:                                               # nothing worth its minutes: best per minute
            return Decision(self._rank(-p / move, valid, move), np.zeros(self.n, bool), price)
        (patch_on, _, _), (square_on, _, _), (tile_on, _, _), _ = plan
        in_plan = valid & (p >= price * self.costs[0]) & patch_on[self.patch] & square_on[self.square] & \
            tile_on[self.tile]
        return Decision(self._rank(-p, valid & (self.patch == target), move), in_plan, price)

    def _value_of_going(self, patch: int, price: float, p: np.ndarray, valid: np.ndarray, move: np.ndarray,
                        time_left: float) -> float:
        """Expected good exposures of taking ``patch``'s holes worth ``price`` (as many as the time allows, at
        least one: a move that crosses the budget still earns) and then the plan that fits the rest of the time."""
        holes = np.flatnonzero(valid & (self.patch == patch))
        holes = holes[np.argsort(-p[holes], kind="stable")]
        entry = float(move[holes[0]])
        worth = int(max((p[holes] >= price * self.costs[0]).sum(), 1))
        k = int(min(worth, max(1, 1 + np.floor((time_left - entry) / self.costs[0]))))
        minutes = entry + (k - 1) * self.costs[0]
        gain = float(p[holes[:k]].sum())
        if minutes >= time_left:
            return gain
        rest = valid.copy()
        rest[holes[:k]] = False
        here = (patch, int(self.patch_square[patch]), int(self.square_tile[self.patch_square[patch]]))
        (fits, _), _ = self.plan(p, rest, time_left - minutes, here, guess=price)
        tiles = fits[2]
        return gain + float((tiles[1] * tiles[0]).sum())

    def _next_patch(self, patches, squares, tiles) -> int:
        """The plan's first stop: the current patch, else the best chosen patch of the current square, of the best
        chosen square of the current tile, or of the best square of the best chosen tile (best: expected good
        exposures per minute). -1 when the plan is empty."""
        c = self.env.current_hole
        patch_on, patch_gain, patch_minutes = patches
        square_on, square_gain, square_minutes = squares
        tile_on, tile_gain, tile_minutes = tiles
        square_on = square_on & tile_on[self.square_tile]
        patch_on = patch_on & square_on[self.patch_square]
        if patch_on[self.patch[c]]:
            return int(self.patch[c])
        square_on &= np.bincount(self.patch_square, patch_on, self.n_squares) > 0
        tile_on &= np.bincount(self.square_tile, square_on, self.n_tiles) > 0

        def best(on: np.ndarray, gain: np.ndarray, minutes: np.ndarray) -> int:
            chosen = np.flatnonzero(on)
            return int(chosen[np.argmax(gain[chosen] / np.maximum(minutes[chosen], _EPS))])

        if patch_on[self.patch_square == self.square[c]].any():
            return best(patch_on & (self.patch_square == self.square[c]), patch_gain, patch_minutes)
        if square_on[self.square_tile == self.tile[c]].any():
            square = best(square_on & (self.square_tile == self.tile[c]), square_gain, square_minutes)
        elif tile_on.any():
            tile = best(tile_on, tile_gain, tile_minutes)
            square = best(square_on & (self.square_tile == tile), square_gain, square_minutes)
        else:
            return -1
        return best(patch_on & (self.patch_square == square), patch_gain, patch_minutes)


class OnlinePlannerPolicy(PlannerPolicy):
    """The planner recalibrated online from the grid's measured exposures (``planner-online``)."""

    name = "planner-online"

    def __init__(self, calibration: Calibration | None = None, bisection_steps: int = 24) -> None:
        super().__init__(calibration, bisection_steps, online=True)


register_policy("planner", lambda seed: PlannerPolicy(), "the budget-aware plan over tiles, squares and patches, "
                "re-made before every move from calibrated probabilities")
register_policy("planner-online", lambda seed: OnlinePlannerPolicy(), "the planner, its calibration updated from "
                "the grid's measured exposures", benchmark=False)
