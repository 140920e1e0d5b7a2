"""How much measured neighbours teach: the real split's residuals are mostly the hole's own, a simulated grid's are
shared by its patches, and a grid whose outcomes are shuffled across holes has nothing to teach."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cryorl import simulate_atlas
from cryorl.agents import PlannerPolicy, evaluate_policy, make_policy
from cryorl.measured_neighbours import (
    GivenProbabilities,
    _NeighbourFit,
    leave_one_out_mean,
    neighbour_information,
    neighbour_probabilities,
)
from cryorl.prediction_quality import with_prediction_quality
from cryorl.synth import CONTEXT_IMAGE_MODEL


def test_leave_one_out_mean_leaves_the_hole_out():
    values = np.array([1.0, 2.0, 6.0, 5.0])
    group = np.array([0, 0, 0, 1])
    assert leave_one_out_mean(values, group).tolist() == [4.0, 3.5, 1.5, 0.0]
    counted = np.array([True, False, True, True])          # the second is unmeasured: in no mean, but gets one
    assert leave_one_out_mean(values, group, counted).tolist() == [6.0, 3.5, 1.0, 0.0]


def _log_loss(p: np.ndarray, good: np.ndarray) -> float:
    return float(-np.mean(np.where(good, np.log(p), np.log1p(-p))))


@pytest.mark.parametrize("grid, held_out_gain", [("simulated 90002", (0.04, 0.08)), ("proxy", (0.0, 0.025))])
def test_measured_neighbours_predict_the_holes_not_measured(grid, held_out_gain, aldolase):
    """With every other hole unmeasured, the probabilities from measured neighbours predict the unmeasured holes
    better than the grid's recalibration alone: by 0.057 nats on simulated grid 90002, by 0.012 on the proxy
    (real outcomes). They score the measured holes as neighbour_information does."""
    atlas = simulate_atlas(90002) if grid.startswith("simulated") else \
        with_prediction_quality(aldolase, "unseen", seed=0)
    measured = np.arange(len(atlas)) % 2 == 0
    half = dataclasses.replace(atlas, true_ctf=np.where(measured, atlas.true_ctf, np.nan))
    known, good = neighbour_probabilities(half), atlas.is_good(6.0)
    assert _log_loss(known["with_neighbours"][measured], good[measured]) == \
        pytest.approx(neighbour_information(half)["with_neighbours"], abs=1e-9)
    gain = _log_loss(known["recalibrated"][~measured], good[~measured]) - \
        _log_loss(known["with_neighbours"][~measured], good[~measured])
    assert held_out_gain[0] < gain < held_out_gain[1]
    fit = _NeighbourFit(half, None, 6.0)               # an unmeasured hole: the mean of its measured neighbours alone
    hole = int(np.flatnonzero(~measured)[0])
    neighbours = measured & (atlas.patch == atlas.patch[hole])
    residual = good - 1.0 / (1.0 + np.exp(-fit.z_recalibrated))
    assert fit.patch_rest[hole] == pytest.approx(residual[neighbours].mean(), abs=1e-12)


def test_the_planner_that_knows_the_outcomes_collects_what_the_oracle_does():
    """The planner's plan loses nothing as a plan: given the outcomes as its probabilities it collects as many good
    exposures as the oracle (605 against 596 here, where the planner on its calibration collects 458;
    benchmarks/ceilings.py: 111.8 / 221.6 / 440.6 against 111.8 / 221.8 / 441.4 on the proxy)."""
    atlas = simulate_atlas(5, n_holes=400, n_patches=20, n_squares=6, n_tiles=3)
    outcomes = np.where(atlas.is_good(6.0), 0.999, 0.001)
    knowing = evaluate_policy(make_policy("planner-outcomes"), atlas, episodes=4, seed=0, budgets=(60, 120))
    given = evaluate_policy(PlannerPolicy(GivenProbabilities(outcomes)), atlas, episodes=4, seed=0, budgets=(60, 120))
    assert knowing.hole.tolist() == given.hole.tolist()               # the registered ceiling is that planner
    oracle = evaluate_policy(make_policy("oracle"), atlas, episodes=4, seed=0, budgets=(60, 120))
    assert knowing.good.sum() >= 0.98 * oracle.good.sum()
    guessing = evaluate_policy(PlannerPolicy(), atlas, episodes=4, seed=0, budgets=(60, 120))
    assert guessing.good.sum() < 0.9 * knowing.good.sum()            # the outcomes were news on this grid
    with pytest.raises(ValueError, match="399 given probabilities for a grid of 400 holes"):
        GivenProbabilities(outcomes[:-1]).probability_good(atlas)
    with pytest.raises(ValueError, match="'given probabilities' has no online prior"):
        evaluate_policy(PlannerPolicy(GivenProbabilities(outcomes), online=True), atlas, episodes=1, budgets=(60,))


def test_neighbours_teach_little_on_the_real_split_and_more_on_a_simulated_grid(aldolase):
    """Figures of benchmarks/neighbours.py: gain 0.007 nats on the proxy, 0.070 on simulated grid 90001, 0.028 on
    that grid with an image model that reads its patch as the real regressor does."""
    proxy = neighbour_information(with_prediction_quality(aldolase, "unseen", seed=0))
    simulated = neighbour_information(simulate_atlas(90001))
    context = neighbour_information(simulate_atlas(90001, **CONTEXT_IMAGE_MODEL))
    assert context["gain"] == pytest.approx(0.028, abs=0.005)
    assert proxy["holes"] == 1197
    assert proxy["with_neighbours"] <= proxy["recalibrated"] <= proxy["calibrated"] + 1e-9
    assert proxy["gain"] == pytest.approx(0.007, abs=0.003)
    assert simulated["gain"] == pytest.approx(0.070, abs=0.01)
    assert simulated["patch_residual_r"] > 1.5 * proxy["patch_residual_r"]


def test_shuffled_outcomes_leave_nothing_to_learn_from_neighbours(aldolase):
    """Outcomes shuffled across the grid keep no patch structure: a leak of the hole's own outcome into its
    neighbours' mean would show here as a large gain."""
    shuffled = dataclasses.replace(aldolase, true_ctf=np.random.default_rng(0).permutation(aldolase.true_ctf))
    information = neighbour_information(shuffled)
    assert information["gain"] < 0.005
    assert abs(information["patch_residual_r"]) < 0.1


def test_too_few_measured_holes_is_one_error():
    atlas = simulate_atlas(0, n_holes=200, n_patches=10, n_squares=3, n_tiles=2)
    unmeasured = dataclasses.replace(atlas, true_ctf=np.where(np.arange(200) < 5, atlas.true_ctf, np.nan))
    with pytest.raises(ValueError, match="5 measured holes"):
        neighbour_information(unmeasured)
    for reference in ("planner-recalibrated", "planner-outcomes"):
        with pytest.raises(ValueError, match=f"^{reference} reads the grid's outcomes, and .* has 5 measured holes"):
            evaluate_policy(make_policy(reference), unmeasured, episodes=1, budgets=(30,))
