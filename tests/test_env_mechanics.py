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
def test_invalid_actions_raise_when_asked(tiny_atlas, action, message):
    env = CryoEMEnv(tiny_atlas, invalid_action="raise")
    env.reset(options={"start": 0})
    with pytest.raises(ValueError, match=message):
        env.step(action)


def test_invalid_actions_are_penalized_by_default(tiny_atlas):
    env = CryoEMEnv(tiny_atlas, budget=3)
    env.reset(options={"start": 0})
    obs, r, term, _, info = env.step(0)
    assert r == -1.0 and info["elapsed"] == 1.0 and info["exposures"] == 0 and not term
    assert env.step(np.int64(1))[1] == 1.0
    assert env.step(99)[1] == -1.0


def test_padding_rows_are_never_valid(tiny_atlas):
    env = CryoEMEnv(tiny_atlas, max_holes=12, invalid_action="raise")
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
    with pytest.raises(ValueError, match=r"budget \(minutes\) must be a positive"):
        CryoEMEnv(tiny_atlas, budget=0)


def test_step_after_the_end_raises(tiny_atlas):
    env = CryoEMEnv(tiny_atlas, budget=1.5)
    env.reset(options={"start": 0})
    assert env.step(1)[2] is False                        # 1 minute spent
    assert env.step(2)[2] is True                         # 2 > 1.5 minutes: the end
    with pytest.raises(RuntimeError, match="the episode has ended .*call reset"):
        env.step(3)
    env.reset(options={"start": 0})
    assert env.step(1)[2] is False                        # a new episode steps again


def test_penalized_invalid_actions_end_the_episode_by_time(tiny_atlas):
    env = CryoEMEnv(tiny_atlas, budget=2.5)
    env.reset(options={"start": 0})
    rewards, done = [], False
    while not done:                                       # a policy stuck on an exposed hole still ends
        _, reward, done, _, _ = env.step(0)
        rewards.append(reward)
    assert rewards == [-1.0, -1.0, -1.0]
    with pytest.raises(RuntimeError, match="ended"):
        env.step(0)


@pytest.mark.parametrize("kwargs, message", [
    ({"threshold": float("nan")}, r"threshold \(Å\) must be a positive, finite number, not nan"),
    ({"threshold": 0}, r"threshold \(Å\) must be a positive"),
    ({"threshold": -6}, r"threshold \(Å\) must be a positive"),
    ({"budget": float("inf")}, r"budget \(minutes\) must be a positive, finite"),
    ({"switch_rewards": (1.0, float("nan"), 0.6, 0.5)}, "switch_rewards must be finite"),
    ({"invalid_action_penalty": float("nan")}, "invalid_action_penalty must be a finite number"),
    ({"max_holes": 10.5}, "max_holes must be an integer number of holes, not 10.5"),
    ({"max_holes": "12"}, "max_holes must be an integer"),
    ({"grid_seed": 3}, r"either atlas= .* or grid=/grid_seed="),
    ({"invalid_action": "ignore"}, "invalid_action must be 'raise' or 'penalize'"),
])
def test_nonsense_settings_are_refused(tiny_atlas, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CryoEMEnv(tiny_atlas, **kwargs)


def test_grids_too_small_to_play_are_refused(tiny_atlas):
    with pytest.raises(ValueError, match="at least 2 holes .* has 1"):
        CryoEMEnv(tiny_atlas.subset([3]))
    env = CryoEMEnv(tiny_atlas.subset([3, 5]), budget=100)      # 2 holes: one start, one exposure, then the end
    env.reset(options={"start": 0})
    assert env.step(1)[2] is True


def test_render_before_reset_is_a_clear_error(tiny_atlas):
    for mode in ("ansi", "rgb_array"):
        with pytest.raises(RuntimeError, match=r"call reset\(\) before render\(\)"):
            CryoEMEnv(tiny_atlas, render_mode=mode).render()


def test_a_simulated_grid_from_a_hole_count_scales_its_hierarchy():
    env = CryoEMEnv(grid={"n_holes": 10000}, grid_seed=1)
    assert len(env.atlas) == 10000 and env.atlas.n_patches == 513          # the default shape: 19.5 holes per patch
    with pytest.raises(ValueError, match=r"unknown grid settings \['holes'\]"):
        CryoEMEnv(grid={"holes": 100})
    with pytest.raises(ValueError, match="n_holes must be a positive integer, not 0"):
        CryoEMEnv(grid={"n_holes": 0})


def test_explicit_arguments_win_over_a_preset_even_at_their_default(tmp_path):
    preset = tmp_path / "long.yaml"
    preset.write_text("grid_seed: 3\ngrid: {n_holes: 300}\nbudget: 900\nthreshold: 5.0\ncosts: cryorl-2022\n")
    from_preset = CryoEMEnv(preset=preset)
    assert (from_preset.budget, from_preset.threshold, from_preset.costs.name) == (900.0, 5.0, "cryorl-2022")
    explicit = CryoEMEnv(preset=preset, budget=480.0, threshold=6.0, costs="cryorl-2023")   # the defaults' values
    assert (explicit.budget, explicit.threshold, explicit.costs.name) == (480.0, 6.0, "cryorl-2023")
    assert len(explicit.atlas) == 300


def test_vanilla_stable_baselines3_trains_on_the_default_environment():
    """Plain SB3 knows nothing of masks: it must be able to pick any action without a crash."""
    import gymnasium as gym
    from stable_baselines3 import DQN, PPO

    import cryorl  # noqa: F401  (registers CryoEM-v0)

    env = gym.make("CryoEM-v0", grid={"n_holes": 120}, budget=60)
    PPO("MultiInputPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0).learn(192)
    DQN("MultiInputPolicy", env, learning_starts=32, buffer_size=500, seed=0).learn(192)
    default = gym.make("CryoEM-v0")
    default.reset(seed=0)
    visited = default.unwrapped.current_hole
    _, reward, *_ = default.step(visited)                 # exposing the start hole again: a penalised no-op
    assert reward == -1.0
