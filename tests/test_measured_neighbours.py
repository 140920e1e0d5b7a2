"""How much measured neighbours teach: the real split's residuals are mostly the hole's own, a simulated grid's are
shared by its patches, and a grid whose outcomes are shuffled across holes has nothing to teach."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cryorl import simulate_atlas
from cryorl.measured_neighbours import leave_one_out_mean, neighbour_information
from cryorl.prediction_quality import with_prediction_quality
from cryorl.synth import CONTEXT_IMAGE_MODEL


def test_leave_one_out_mean_leaves_the_hole_out():
    values = np.array([1.0, 2.0, 6.0, 5.0])
    group = np.array([0, 0, 0, 1])
    assert leave_one_out_mean(values, group).tolist() == [4.0, 3.5, 1.5, 0.0]


def test_neighbours_teach_little_on_the_real_split_and_more_on_a_simulated_grid(aldolase):
    """Figures of benchmarks/neighbours.py: gain 0.016 nats on the proxy, 0.078 on simulated grid 90001, 0.023 on
    that grid with an image model that reads its patch as the real regressor does."""
    proxy = neighbour_information(with_prediction_quality(aldolase, "unseen", seed=0))
    simulated = neighbour_information(simulate_atlas(90001))
    context = neighbour_information(simulate_atlas(90001, **CONTEXT_IMAGE_MODEL))
    assert context["gain"] == pytest.approx(0.023, abs=0.005)
    assert proxy["holes"] == 1197
    assert proxy["with_neighbours"] <= proxy["recalibrated"] <= proxy["calibrated"] + 1e-9
    assert proxy["gain"] == pytest.approx(0.016, abs=0.004)
    assert simulated["gain"] == pytest.approx(0.078, abs=0.01)
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
