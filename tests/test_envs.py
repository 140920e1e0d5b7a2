"""Every registered id and every envs/*.yaml preset through the Gymnasium and SB3 checkers."""
import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import cryorl
from cryorl.presets import list_presets

CASES = [("id", env_id) for env_id in cryorl.ENV_IDS] + [("preset", name) for name in list_presets()]


def make(kind, name, **kwargs):
    if kind == "id":
        return gym.make(name, **kwargs)
    return gym.make("CryoEM-v0", preset=name, **kwargs)


@pytest.fixture(autouse=True)
def _cache(data_cache):
    """Presets that read the real split find it in the data cache."""


@pytest.mark.parametrize("kind, name", CASES)
def test_gymnasium_checker(kind, name):
    env = make(kind, name, invalid_action="penalize")
    gym_check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("kind, name", CASES)
def test_sb3_checker(kind, name):
    env = make(kind, name, invalid_action="penalize")
    sb3_check_env(env.unwrapped, warn=False)


def _rollout(env, seed, steps=25):
    obs, info = env.reset(seed=seed)
    trace = [info["hole"]]
    for _ in range(steps):
        obs, r, done, _, info = env.step(int(np.flatnonzero(obs["action_mask"])[len(trace) % 7]))
        trace.append((info["hole"], r, info["elapsed"]))
        if done:
            break
    return trace, obs


@pytest.mark.parametrize("kind, name", CASES)
def test_seeded_determinism_and_pickling(kind, name):
    env = make(kind, name)
    first, obs1 = _rollout(env, seed=5)
    second, obs2 = _rollout(make(kind, name), seed=5)
    assert first == second
    for key in obs1:
        np.testing.assert_array_equal(obs1[key], obs2[key])
    assert _rollout(env, seed=6)[0] != first
    clone = pickle.loads(pickle.dumps(env.unwrapped))
    action = int(np.flatnonzero(clone.action_masks())[0])
    assert clone.step(action)[1:4] == env.unwrapped.step(action)[1:4]


@pytest.mark.parametrize("kind, name", CASES[:2])
def test_render_modes(kind, name):
    env = make(kind, name, render_mode="rgb_array")
    env.reset(seed=0)
    env.step(int(np.flatnonzero(env.unwrapped.action_masks())[0]))
    image = env.render()
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20      # a drawn map, not a blank canvas
    text = make(kind, name, render_mode="ansi")
    text.reset(seed=0)
    out = text.render()
    assert "elapsed 0.0/480 min" in out and "good exposures" in out


def test_default_grid_is_drawn_by_the_reset_seed():
    env = gym.make("CryoEM-v0")
    env.reset(seed=1)
    a = env.unwrapped.atlas
    env.reset(seed=2)
    b = env.unwrapped.atlas
    env.reset()
    assert env.unwrapped.atlas is b                # no seed: same grid
    assert len(a) == len(b) == 2341 and not np.array_equal(a.true_ctf, b.true_ctf)
    resampling = gym.make("CryoEM-v0", resample_grid=True, grid={"n_holes": 100, "n_patches": 8, "n_squares": 3,
                                                                 "n_tiles": 2})
    resampling.reset(seed=1)
    first = resampling.unwrapped.atlas
    resampling.reset()
    assert resampling.unwrapped.atlas is not first
    fixed = gym.make("cryorl:CryoEM-v0", grid_seed=3)
    fixed.reset(seed=1)
    g = fixed.unwrapped.atlas
    fixed.reset(seed=2)
    assert fixed.unwrapped.atlas is g


def test_vector_env_runs():
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CryoEM-v0", grid={"n_holes": 300, "n_patches": 22,
                                                                       "n_squares": 4, "n_tiles": 3})] * 2)
    obs, info = envs.reset(seed=0)
    actions = np.array([np.flatnonzero(m)[0] for m in obs["action_mask"]])
    obs, rewards, term, trunc, info = envs.step(actions)
    assert rewards.shape == (2,) and obs["predicted_ctf"].shape == (2, 300)


def test_preset_settings_and_overrides(data_cache):
    env = gym.make("CryoEM-v0", preset="aldolase").unwrapped
    assert len(env.atlas) == 1197 and env.budget == 480 and env.costs.name == "cryorl-2023"
    env = gym.make("CryoEM-v0", preset="aldolase-papers", budget=120).unwrapped
    assert env.budget == 120 and env.feature_set_name == "cryorl"
    assert gym.make("CryoEM-v0", preset="simulated-timestamps").unwrapped.costs.patch == 3.08


def test_bad_presets(tmp_path):
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        gym.make("CryoEM-v0", preset="nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("budget: 100\nbudjet: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown preset keys \['budjet'\]"):
        gym.make("CryoEM-v0", preset=bad)
