"""The native vector environment (``make_vec(..., vectorization_mode="vector_entry_point")``) runs exactly the
episodes of N single CryoEMEnvs given the same seeds and actions: every observation key, reward, end and info,
over whole episodes and their autoresets, on simulated and real grids."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import cryorl  # noqa: F401  (registers CryoEM-v0)
from cryorl.quality import predicted_quality
from cryorl.synth import GridSpec
from cryorl.vector_env import CryoEMVectorEnv
from tests.conftest import make_tiny_atlas

N_ENVS = 3


def assert_same(ours, theirs, where: str) -> None:
    """Equal keys, dtypes, shapes and values, through dicts and object arrays (final_obs holds dicts)."""
    if isinstance(ours, tuple):
        assert isinstance(theirs, tuple) and len(ours) == len(theirs), where
        for k, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{where}[{k}]")
        return
    if isinstance(ours, dict):
        assert isinstance(theirs, dict) and ours.keys() == theirs.keys(), (where, set(ours) ^ set(theirs))
        for key in ours:
            assert_same(ours[key], theirs[key], f"{where}[{key!r}]")
        return
    if isinstance(ours, np.ndarray) and ours.dtype == object:
        assert isinstance(theirs, np.ndarray) and theirs.dtype == object and ours.shape == theirs.shape, where
        for k, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{where}[{k}]")
        return
    if isinstance(ours, np.ndarray):
        assert isinstance(theirs, np.ndarray), where
        assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), (where, ours.dtype, theirs.dtype)
        np.testing.assert_array_equal(ours, theirs, err_msg=where)
        return
    assert ours == theirs and type(ours) is type(theirs), (where, ours, theirs)


def policy_actions(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """A random unvisited hole per grid, and now and then an invalid action: an exposed hole or a padded row."""
    actions = np.argmax(np.where(mask, rng.random(mask.shape), -1.0), axis=1)
    exposed = np.argmin(mask, axis=1)                       # a visited hole (the start hole at least)
    padded = np.full(len(mask), mask.shape[1] - 1)          # the last row: padding when max_holes > holes
    draw = rng.random(len(mask))
    return np.where(draw < 0.08, exposed, np.where(draw < 0.15, padded, actions))


def run_against_single_envs(kwargs: dict, seed: int, episodes: int) -> dict[str, int]:
    """Step the vector env and N single envs (gym.make, seeds seed + i, NEXT_STEP autoreset by hand) with the same
    actions until every grid has finished ``episodes`` episodes; compare everything at every step."""
    vector = gym.make_vec("CryoEM-v0", num_envs=N_ENVS, vectorization_mode="vector_entry_point", **kwargs)
    singles = [gym.make("CryoEM-v0", **kwargs) for _ in range(N_ENVS)]
    obs, info = vector.reset(seed=seed)
    for i, env in enumerate(singles):
        single_obs, single_info = env.reset(seed=seed + i)
        for key in single_obs:
            assert_same(obs[key][i], single_obs[key], f"reset obs {key} of grid {i}")
        for key in ("hole_index", "elapsed", "switch_level", "true_ctf", "predicted_ctf", "hole"):
            assert info[key][i] == single_info[key], (key, i)
    rng = np.random.default_rng(seed)
    finished = np.zeros(N_ENVS, dtype=int)
    ended = np.zeros(N_ENVS, dtype=bool)
    counts = {"steps": 0, "invalid": 0, "rewarded": 0}
    while finished.min() < episodes:
        actions = policy_actions(rng, info["action_mask"])
        obs, rewards, terminated, truncated, info = vector.step(actions)
        for i, env in enumerate(singles):
            if ended[i]:            # next-step autoreset: the step after the end resets, its action is ignored
                single_obs, single_info = env.reset()
                single = (single_obs, 0.0, False, False, single_info)
            else:
                single = env.step(int(actions[i]))
            where = f"step {counts['steps']}, grid {i}"
            for key in single[0]:
                assert_same(obs[key][i], single[0][key], f"{where}: obs {key}")
            assert rewards[i] == single[1] and terminated[i] == single[2] and truncated[i] == single[3], where
            for key, value in single[4].items():
                if key == "action_mask":
                    np.testing.assert_array_equal(info[key][i], value, err_msg=where)
                else:
                    assert info[key][i] == value, (where, key, info[key][i], value)
            counts["invalid"] += single[1] == -1.0
            counts["rewarded"] += single[1] > 0
        assert rewards.dtype == np.float64 and terminated.dtype == truncated.dtype == np.bool_
        ended = terminated | truncated
        finished += ended
        counts["steps"] += 1
    vector.close()
    return counts


@pytest.mark.parametrize("kwargs", [
    {"grid": GridSpec.with_holes(300), "budget": 60.0, "max_holes": 310},
    {"grid": GridSpec.with_holes(300), "budget": 30.0, "resample_grid": True, "costs": "cryorl-2022"},
    {"atlas": make_tiny_atlas(), "budget": 1000.0, "max_holes": 9},      # episodes end when every hole is exposed
], ids=["simulated", "simulated-resampled", "tiny-exhausted"])
def test_the_vector_env_steps_like_single_envs(kwargs):
    counts = run_against_single_envs(kwargs, seed=11, episodes=3)
    assert counts["invalid"] >= 3 and counts["rewarded"] >= 10


@pytest.mark.parametrize("budget, costs", [(40.0, "cryorl-2023"), (150.0, "aldolase-timestamps")])
def test_the_vector_env_steps_like_single_envs_on_the_real_grid(aldolase, budget, costs):
    counts = run_against_single_envs({"atlas": aldolase, "budget": budget, "costs": costs, "max_holes": 1200},
                                     seed=3, episodes=3)
    assert counts["invalid"] >= 3 and counts["rewarded"] >= 10


def test_a_resampled_grid_reaches_the_observation_at_every_autoreset():
    envs = CryoEMVectorEnv(2, grid=GridSpec.with_holes(300), budget=5.0, resample_grid=True)
    obs, _ = envs.reset(seed=0)
    first = envs.atlases
    predicted = obs["predicted_ctf"].copy()
    ended = np.zeros(2, dtype=bool)
    while not ended.all():
        obs, _, terminated, _, _ = envs.step(np.argmax(obs["action_mask"], axis=1))
        ended |= terminated
    obs, *_ = envs.step(np.zeros(2, dtype=np.int64))           # the autoreset step
    assert all(a is not b for a, b in zip(envs.atlases, first))
    assert not np.array_equal(obs["predicted_ctf"], predicted)
    np.testing.assert_array_equal(obs["predicted_ctf"][0, :300], predicted_quality(envs.atlases[0]).astype(np.float32))


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_the_vector_env_matches_gymnasiums_sync_vector_env(mode):
    """Infos as SyncVectorEnv lays them out (masks, final_obs and final_info in same-step mode), and
    max_episode_steps truncating as gym.make's TimeLimit does."""
    kwargs = {"grid": GridSpec.with_holes(300), "budget": 80.0, "max_episode_steps": 30}
    ours = gym.make_vec("CryoEM-v0", num_envs=N_ENVS, vectorization_mode="vector_entry_point",
                        autoreset_mode=mode, **kwargs)
    theirs = gym.make_vec("CryoEM-v0", num_envs=N_ENVS, vectorization_mode="sync",
                          vector_kwargs={"autoreset_mode": mode}, **kwargs)
    assert ours.metadata["autoreset_mode"] is mode
    obs, info = ours.reset(seed=4)
    assert_same((obs, info), theirs.reset(seed=4), "reset")
    rng = np.random.default_rng(4)
    ends = truncations = 0

    def step_both(steps: int, info: dict) -> dict:
        nonlocal ends, truncations
        for step in range(steps):
            actions = policy_actions(rng, info["action_mask"])
            result = ours.step(actions)
            expected = theirs.step(actions)
            for name, a, b in zip(("obs", "reward", "terminated", "truncated", "info"), result, expected):
                assert_same(a, b, f"step {step}: {name}")
            info, ended = result[4], result[2] | result[3]
            ends += result[2].sum()
            truncations += result[3].sum()
            if mode is AutoresetMode.SAME_STEP and ended.any():     # reset within the step: a new episode's start
                np.testing.assert_array_equal(info["_final_obs"], ended)
                assert (result[0]["visited"][ended].sum(axis=1) == 1).all()
        return info

    info = step_both(120, info)
    assert ends > 0 and truncations > 0
    # a partial reset, with per-grid seeds and a budget for these episodes
    options = {"reset_mask": np.array([True, False, True]), "budget": 25.0}
    obs, info = ours.reset(seed=[7, None, 9], options=options)
    assert_same((obs, info), theirs.reset(seed=[7, None, 9], options=dict(options)), "partial reset")
    np.testing.assert_array_equal(obs["time_left"][[0, 2], 0], [25.0, 25.0])
    step_both(40, info)


def test_returned_observations_are_the_callers():
    envs = CryoEMVectorEnv(2, grid=GridSpec.with_holes(300))
    obs, _ = envs.reset(seed=0)
    obs["visited"][:] = 1
    obs["predicted_ctf"][:] = 0.0
    after, *_ = envs.step(np.argmax(envs.action_masks(), axis=1))
    assert after["visited"].sum() == 4 and after["predicted_ctf"].max() > 0


def test_invalid_actions_are_penalised_no_ops_on_a_hand_made_grid(tiny_atlas):
    """Tiny atlas (tests/conftest.py), both grids start at hole 0 (patch p1, square A1, tile A)."""
    envs = CryoEMVectorEnv(4, atlas=tiny_atlas, max_holes=10, budget=100.0)
    obs, _ = envs.reset(seed=0, options={"start": 0})
    #   grid:    0: hole 0 again   1: hole 5 (p3, A2: square move, good)   2: row 9 (padding)   3: outside
    obs, rewards, terminated, _, info = envs.step(np.array([0, 5, 9, 10]))
    np.testing.assert_array_equal(rewards, [-1.0, 0.61, -1.0, -1.0])
    np.testing.assert_array_equal(info["elapsed"], [1.0, 6.0, 1.0, 1.0])       # an invalid action: a hole move
    np.testing.assert_array_equal(info["switch_level"], [-1, 2, -1, -1])
    np.testing.assert_array_equal(info["hole_index"], [0, 5, 0, 0])
    np.testing.assert_array_equal(obs["visited"].sum(axis=1), [1, 2, 1, 1])
    np.testing.assert_array_equal(obs["measured_ctf"][1, [0, 5]], [4.0, 3.0])
    np.testing.assert_array_equal(obs["current"].argmax(axis=1), [0, 5, 0, 0])
    assert not terminated.any()
    # a batch of non-integer actions is invalid throughout, as a non-integer action is for one environment
    _, rewards, *_ = envs.step(np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(rewards, [-1.0] * 4)
    strict = CryoEMVectorEnv(2, atlas=tiny_atlas, invalid_action="raise")
    strict.reset(seed=0, options={"start": 0})
    with pytest.raises(ValueError, match="sub-environment 1: action 0 is not an unvisited hole"):
        strict.step(np.array([1, 0]))
    _, rewards, _, _, info = strict.step(np.array([1, 7]))      # nothing moved before the error
    np.testing.assert_array_equal(info["elapsed"], [1.0, 8.0])
    np.testing.assert_array_equal(rewards, [1.0, 0.5])


def test_make_vec_builds_the_native_vector_env_and_gymnasiums_wrappers_run_on_it():
    envs = gym.make_vec("CryoEM-v0", num_envs=2, grid=GridSpec.with_holes(300), budget=20.0)   # the default mode
    assert isinstance(envs, CryoEMVectorEnv) and envs.spec.id == "CryoEM-v0"
    assert envs.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    envs.action_space.seed(0)
    obs, _ = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)
    returns, total, episodes = [], np.zeros(2), []
    while len(episodes) < 2:
        obs, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
        assert envs.observation_space.contains(obs)
        total += rewards
        for i in np.flatnonzero(terminated | truncated):
            returns.append(total[i])
            total[i] = 0.0
            episodes.append(info["episode"]["r"][i])
    np.testing.assert_allclose(episodes, returns[:len(episodes)])
    np.testing.assert_array_equal(envs.unwrapped.action_masks(), obs["action_mask"].astype(bool))


def test_settings_the_vector_env_cannot_batch_are_refused():
    with pytest.raises(ValueError, match="compact observation, not feature_set='cryorl'"):
        CryoEMVectorEnv(2, grid=GridSpec.with_holes(300), feature_set="cryorl")
    with pytest.raises(ValueError, match="does not render"):
        CryoEMVectorEnv(2, grid=GridSpec.with_holes(300), render_mode="ansi")
    with pytest.raises(ValueError, match="num_envs must be a positive integer"):
        CryoEMVectorEnv(0)
    envs = CryoEMVectorEnv(2, grid=GridSpec.with_holes(300))
    with pytest.raises(RuntimeError, match="reset"):
        envs.step(np.array([0, 1]))
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=r"one action per sub-environment, shape \(2,\)"):
        envs.step(np.array([0, 1, 2]))
