"""The CryoRL mechanics, step by step, on a tiny grid whose right answers are worked out by hand."""
import numpy as np
import pytest

from cryorl import CryoEMEnv


def test_hand_checked_episode(tiny_atlas):
    env = CryoEMEnv(tiny_atlas, budget=12.0)
    obs, info = env.reset(seed=0, options={"start": 0})
    assert info["elapsed"] == 0 and info["good_exposures"] == 0 and info["hole"] == "h0"
    assert obs["action_mask"].tolist() == [0, 1, 1, 1, 1, 1, 1, 1]
    expected = [
        # action, level, reward, elapsed, terminated
        (1, 0, 1.0, 1.0, False),    # same patch, good (5.0 Å)
        (2, 0, 0.0, 2.0, False),    # same patch, bad (9.0 Å)
        (3, 1, 0.9, 4.0, False),    # other patch, same square; 6.0 Å is good (inclusive)
        (5, 2, 0.61, 10.0, False),  # other square, same tile; good
        (7, 3, 0.5, 18.0, True),    # other tile: crosses the 12-minute budget, still earns its reward
    ]
    for action, level, reward, elapsed, terminated in expected:
        obs, r, term, trunc, info = env.step(action)
        assert (info["switch_level"], r, info["elapsed"], term, trunc) == (level, reward, elapsed, terminated, False)
        assert info["hole"] == f"h{action}" and obs["action_mask"][action] == 0
    assert info["good_exposures"] == 4 and info["exposures"] == 5
    assert env.unwrapped.path == [0, 1, 2, 3, 5, 7]


def test_budget_is_strictly_greater(tiny_atlas):
    env = CryoEMEnv(tiny_atlas, budget=2.0)
    env.reset(options={"start": 0})
    assert env.step(1)[2] is False        # 1 minute
    assert env.step(2)[2] is False        # 2 minutes == budget: not over yet
    assert env.step(3)[2] is True         # 4 minutes


def test_fit_failures_are_bad_and_episode_ends_when_all_visited(tiny_atlas):
    env = CryoEMEnv(tiny_atlas, budget=1000.0)
    env.reset(options={"start": 6})
    rewards, terminated = [], False
    for action in [7, 4, 0, 1, 2, 3, 5]:
        assert not terminated
        _, r, terminated, _, info = env.step(action)
        rewards.append(r)
    assert terminated and info["exposures"] == 7
    assert rewards[1] == 0.0               # hole 4: 100000 Å, a failed fit
    assert rewards == [1.0, 0.0, 0.9, 1.0, 0.0, 0.9, 0.61]


def test_cost_presets_and_custom_rewards(tiny_atlas):
    env = CryoEMEnv(tiny_atlas, costs="cryorl-2022", switch_rewards=(1, 1, 1, 1))
    env.reset(options={"start": 0})
    assert [env.step(a)[4]["elapsed"] for a in (1, 3, 5, 6)] == [2, 7, 17, 37]
    env = CryoEMEnv(tiny_atlas, costs={"hole": 1.5, "patch": 3.1, "square": 9, "tile": 12})
    env.reset(options={"start": "h0"})
    assert env.step(6)[4]["elapsed"] == 12


def test_threshold_is_configurable(tiny_atlas):
    env = CryoEMEnv(tiny_atlas, threshold=4.5)
    env.reset(options={"start": 2})
    assert env.step(0)[1] == 1.0 and env.step(1)[1] == 0.0   # 4.0 good, 5.0 not at 4.5 Å


@pytest.mark.parametrize("action, message", [
    (0, r"action 0 \(h0\) was already exposed"),
    (8, r"action 8 is outside this grid's holes 0..7"),
    (-1, r"action -1 is outside"),
    (2.5, r"action must be an integer hole index, got 2.5"),
    ("h1", r"action must be an integer hole index"),
])
def test_invalid_actions_raise(tiny_atlas, action, message):
    env = CryoEMEnv(tiny_atlas)
    env.reset(options={"start": 0})
    with pytest.raises(ValueError, match=message):
        env.step(action)


def test_invalid_actions_can_be_penalized(tiny_atlas):
    env = CryoEMEnv(tiny_atlas, invalid_action="penalize", budget=3)
    env.reset(options={"start": 0})
    obs, r, term, _, info = env.step(0)
    assert r == -1.0 and info["elapsed"] == 1.0 and info["exposures"] == 0 and not term
    assert env.step(np.int64(1))[1] == 1.0
    assert env.step(99)[1] == -1.0


def test_padding_rows_are_never_valid(tiny_atlas):
    env = CryoEMEnv(tiny_atlas, max_holes=12)
    obs, info = env.reset(seed=3)
    assert env.action_space.n == 12
    assert obs["action_mask"][8:].sum() == 0 and obs["is_hole"].tolist() == [1] * 8 + [0] * 4
    assert env.action_masks()[8:].sum() == 0 and info["action_mask"][8:].sum() == 0
    with pytest.raises(ValueError, match=r"rows 8..11 are padding"):
        env.step(9)
    with pytest.raises(ValueError, match="max_holes is 5"):
        CryoEMEnv(tiny_atlas, max_holes=5)


def test_compact_observation(tiny_atlas):
    env = CryoEMEnv(tiny_atlas, budget=10)
    obs, _ = env.reset(options={"start": 4})
    assert obs["predicted_ctf"].tolist() == pytest.approx([5.0, 4.0, 7.0, 6.5, 15.0, 3.5, 3.0, 9.0])
    assert obs["measured_ctf"].tolist() == [0, 0, 0, 0, 20.0, 0, 0, 0]     # failed fit, clipped at 20 Å
    assert obs["current"].tolist() == [0, 0, 0, 0, 1, 0, 0, 0]
    assert obs["hierarchy"][6].tolist() == [1, 2, 3]
    assert obs["costs"].tolist() == [1, 2, 6, 8] and obs["threshold"].tolist() == [6.0]
    obs, *_ = env.step(5)
    assert obs["time_left"].tolist() == [4.0] and obs["visited"].tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    assert obs["measured_ctf"][5] == 3.0
    obs, *_ = env.step(6)
    assert obs["time_left"].tolist() == [0.0]


def test_budget_per_episode(tiny_atlas):
    env = CryoEMEnv(tiny_atlas, budget=100)
    obs, _ = env.reset(options={"start": 0, "budget": 1.5})
    assert obs["time_left"][0] == 1.5 and env.episode_budget == 1.5
    assert env.step(1)[2] is False and env.step(3)[2] is True
    assert env.reset(options={"start": 0})[0]["time_left"][0] == 100
    with pytest.raises(ValueError, match=r"unknown reset options \['budjet'\]"):
        env.reset(options={"budjet": 3})


def test_uniform_random_start_covers_every_hole(tiny_atlas):
    env = CryoEMEnv(tiny_atlas)
    starts = {env.reset(seed=s)[1]["hole_index"] for s in range(200)}
    assert starts == set(range(8))


def test_step_before_reset_and_bad_arguments(tiny_atlas):
    with pytest.raises(RuntimeError, match="reset"):
        CryoEMEnv(tiny_atlas).step(0)
    with pytest.raises(ValueError, match="unknown cost preset 'fast'"):
        CryoEMEnv(tiny_atlas, costs="fast")
    with pytest.raises(ValueError, match="unknown feature_set 'pixels'"):
        CryoEMEnv(tiny_atlas, feature_set="pixels")
    with pytest.raises(ValueError, match="budget must be a positive"):
        CryoEMEnv(tiny_atlas, budget=0)
