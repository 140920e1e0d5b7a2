"""The budget-aware planner and its calibration: hand-checked choices, the price of time, and real margins."""
from __future__ import annotations

import numpy as np
import pytest

from cryorl import Atlas, CryoEMEnv, simulate_atlas
from cryorl.agents import GreedyLocalPolicy, PlannerPolicy, evaluate_policy, make_policy, summarize
from cryorl.calibration import FEATURES, Calibration, default_calibration, fit_on_simulated_grids
from cryorl.quality import probability_good

# P(good) = sigmoid(6 - predicted): 5.8 Å -> 0.55, 3.0 Å -> 0.95, 9.0 Å -> 0.05 (no context, for hand checks)
PLAIN = Calibration((6.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0), source="hand")


def two_tiles(mediocre: float = 5.8, good: float = 3.0) -> Atlas:
    """Tile A: square A1 with patch a1 (6 holes predicted ``mediocre``). Tile B: square B1 with patches b1, b2, b3
    (10 holes each, predicted ``good``). Holes 0-5 are a1."""
    patch = np.repeat([0, 1, 2, 3], [6, 10, 10, 10])
    square = np.where(patch == 0, 0, 1)
    predicted = np.where(patch == 0, mediocre, good)
    return Atlas(names=np.array([f"h{i}" for i in range(36)]), tile=square.copy(), square=square, patch=patch,
                 x=np.zeros(36), y=np.zeros(36), true_ctf=np.full(36, 4.0), predicted_ctf=predicted,
                 tile_names=("A", "B"), square_names=("A1", "B1"), patch_names=("a1", "b1", "b2", "b3"))


def first_move(policy, atlas: Atlas, budget: float) -> int:
    env = CryoEMEnv(atlas, budget=budget)
    obs, _ = env.reset(options={"start": 0})
    policy.reset(env)
    return policy.act(obs, obs["action_mask"])


def test_the_price_of_time_decides_whether_to_stay():
    atlas = two_tiles()
    # 30 minutes buy far more good exposures in tile B (8 min away, p = 0.95) than a1's p = 0.55 holes: leave now,
    # where greedy-local stays (5.8 Å is "predicted good" to it)
    assert first_move(PlannerPolicy(PLAIN), atlas, 30) >= 6
    assert first_move(GreedyLocalPolicy(), atlas, 30) < 6
    # with 400 minutes everything fits: finish a1 first (its holes are cheap now, dear later)
    assert first_move(PlannerPolicy(PLAIN), atlas, 400) < 6
    # a1 at p = 0.05: with 40 minutes (tile B's 30 holes take 41) not one of them; with 45 minutes one a1 hole
    # (1 min) and all of B still fit, so take it on the way; with time for everything, a1's cheap holes first
    assert first_move(PlannerPolicy(PLAIN), two_tiles(mediocre=9.0), 40) >= 6
    env = CryoEMEnv(two_tiles(mediocre=9.0), budget=40)       # there the plan that runs over starts with a1's
    obs, _ = env.reset(options={"start": 0})                  # marginal holes and the plan that fits does not:
    planner = PlannerPolicy(PLAIN)                            # valuing both first stops decides
    planner.reset(env)
    (fits, _), (over, _) = planner.plan(planner.p, obs["action_mask"] > 0, 40)
    assert planner._next_patch(*fits[:3]) == 1 and planner._next_patch(*over[:3]) == 0
    assert first_move(PlannerPolicy(PLAIN), two_tiles(mediocre=9.0), 45) < 6
    assert first_move(PlannerPolicy(PLAIN), two_tiles(mediocre=9.0), 400) < 6


def test_the_plan_fills_the_time_left_and_its_price_falls_with_more_time():
    atlas = simulate_atlas(3)
    env = CryoEMEnv(atlas, budget=240)
    env.reset(seed=0)
    planner = PlannerPolicy()
    planner.reset(env)
    valid = ~np.asarray(env.visited)
    prices = []
    for minutes in (30, 120, 480):
        (fits, high), (over, low) = planner.plan(planner.p, valid, minutes)
        assert fits[-1] <= minutes < over[-1]            # the price at which the plan fills the time, bracketed
        assert 0 < high - low < 1e-5
        prices.append(low)
    assert prices[0] >= prices[1] >= prices[2] > 0 and prices[0] > prices[2]    # time is dearer when short


def test_where_the_price_search_starts_does_not_change_the_plan():
    # the last decision's price only says where to look first (near the answer, far below or above it, or none):
    # where the plan's minutes fall as the price rises, as on this grid, the plan is the same
    atlas = simulate_atlas(3)
    env = CryoEMEnv(atlas, budget=240)
    env.reset(seed=0)
    planner = PlannerPolicy()
    planner.reset(env)
    valid = ~np.asarray(env.visited)
    for minutes in (30, 120, 480):
        (fits, high), (over, low) = planner.plan(planner.p, valid, minutes)
        for guess in (high, low * (1 - 1e-4), high * 1.01, high * 0.3, high * 5.0, 1e-9):
            (fits_g, high_g), (over_g, low_g) = planner.plan(planner.p, valid, minutes, guess=guess)
            assert (high_g, low_g) == (high, low) and (fits_g[-1], over_g[-1]) == (fits[-1], over[-1])
            assert all(np.array_equal(a, b) for a, b in zip(fits_g[0], fits[0]))      # the same patches chosen


def test_last_move_goes_to_the_most_probable_hole_anywhere():
    atlas = two_tiles(mediocre=5.8)
    env = CryoEMEnv(atlas, budget=1.5)
    obs, _ = env.reset(options={"start": 0})
    obs, *_ = env.step(1)                                 # 1 of 1.5 minutes spent: the next move is the last
    planner = PlannerPolicy(PLAIN)
    planner.reset(env)
    assert planner.act(obs, obs["action_mask"]) >= 6      # a tile away, but it earns before the episode ends


def test_planner_beats_greedy_local_on_a_held_out_grid():
    # never used to fit the calibration (the real split; seeds 1000-1019), at in-sample quality (at unseen quality
    # the margin is smaller: benchmarks/unseen.py)
    atlas = simulate_atlas(90002, prediction_quality="in-sample")
    good = {}
    for policy in (make_policy("greedy-local"), make_policy("planner")):
        good[policy.name] = summarize(evaluate_policy(policy, atlas, episodes=6, budgets=(240, 480)))["good_mean"]
    ratio = (good["planner"] / good["greedy-local"]).to_numpy()
    assert (ratio > 1.02).all(), ratio


def test_calibration_uses_the_patch_and_beats_the_prior_mapping():
    calibration = fit_on_simulated_grids(seeds=range(1000, 1006), prediction_quality="in-sample")
    weights = dict(zip(FEATURES, calibration.weights))
    assert weights["score"] < 0 and weights["patch mean"] < 0  # a good-looking patch makes each hole likelier good
    held_out = simulate_atlas(2001, prediction_quality="in-sample")
    prior = probability_good(held_out)
    measured = held_out.is_good()
    prior_loss = -np.mean(np.where(measured, np.log(prior), np.log1p(-prior)))
    assert calibration.log_loss(held_out) < 0.95 * prior_loss
    p = calibration.probability_good(held_out)
    low, high = np.argsort(held_out.predicted_ctf)[[0, -1]]
    assert p[low] > 0.8 > 0.1 > p[high]


def test_calibration_files_and_classifier_probabilities(tmp_path):
    shipped = default_calibration()
    again = Calibration.load(shipped.save(tmp_path / "c.json"))
    assert again == shipped and "real outcomes" in shipped.source and shipped.online is not None
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a cryorl calibration"):
        Calibration.load(tmp_path / "bad.json")
    atlas = two_tiles()
    classifier = atlas.with_predictions(predicted_good=np.linspace(0.01, 0.99, 36))
    means_only = Calibration((5.0, -0.4, -0.4, 0.1, -0.2, 0.5, -0.4))               # no classifier weights:
    assert means_only.probability_good(classifier) == pytest.approx(np.linspace(0.01, 0.99, 36))   # used as it is
    recalibrated = shipped.probability_good(classifier)             # the shipped one recalibrates their log-odds
    assert np.abs(recalibrated - np.linspace(0.01, 0.99, 36)).max() > 0.05
    for patch in np.unique(atlas.patch):                            # and keeps their order within a patch
        assert (np.diff(recalibrated[atlas.patch == patch]) > 0).all()
    with pytest.raises(ValueError, match="not classifier probabilities"):
        Calibration.fit_atlases([classifier])
    assert make_policy("planner").name == "planner"


def near_and_far(far_patches: int = 10) -> Atlas:
    """Tile A: the start hole (patch a0, 9 Å) and patch a1 (25 holes predicted 3.6 Å, p ≈ 0.92). Tile B, 8 minutes
    away: ``far_patches`` patches of 20 holes predicted 3.0 Å (p ≈ 0.95), far more than a short session can take."""
    patch = np.repeat(np.arange(2 + far_patches), [1, 25] + [20] * far_patches)
    tile = np.where(patch < 2, 0, 1)
    n = len(patch)
    predicted = np.select([patch == 0, patch == 1], [9.0, 3.6], 3.0)
    return Atlas(names=np.array([f"h{i}" for i in range(n)]), tile=tile, square=tile.copy(), patch=patch,
                 x=np.zeros(n), y=np.zeros(n), true_ctf=np.full(n, 4.0), predicted_ctf=predicted,
                 tile_names=("A", "B"), square_names=("A1", "B1"),
                 patch_names=tuple(f"p{i}" for i in range(2 + far_patches)))


def test_a_far_tile_is_valued_by_what_fits_in_the_time_left():
    # 30 minutes: a1 (2-min entry, 25 holes: 26 min) earns 25 × 0.92 ≈ 22.9; tile B (8-min entry) only 22 × 0.95 ≈
    # 20.9. Valued whole (200 holes, a rate near 0.95 per hole) tile B would outbid a1 at the price that fills the
    # time; valued by the 22 minutes that fit after its entry, it does not
    assert 1 <= first_move(PlannerPolicy(PLAIN), near_and_far(), 30) < 26
    # with a single far patch, a1 (26 min) and all of B (8 + 19 min) fit in 60 minutes: the tour starts where the
    # microscope is
    assert 1 <= first_move(PlannerPolicy(PLAIN), near_and_far(1), 60) < 26


def test_a_calibration_for_another_threshold_is_refused_in_one_line():
    """The shipped calibration answers the 6 Å question: a 5 Å environment must not plan on it silently. Fails if
    PlannerPolicy.reset stops comparing the calibration's threshold with the environment's."""
    env = CryoEMEnv(two_tiles(), budget=60, threshold=5.0)
    env.reset(options={"start": 0})
    with pytest.raises(ValueError) as refused:
        PlannerPolicy(default_calibration()).reset(env)
    message = str(refused.value)
    assert "\n" not in message and "≤ 6 Å" in message and "≤ 5 Å" in message
    assert "fit_on_real_outcomes(split, threshold=T)" in message
