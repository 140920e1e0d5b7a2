"""The observation schema (cryorl.observation) is the one declaration of every key: the spaces, the observed arrays,
the network's batching and inputs, the imitation buffers, the docs and the policy format follow it."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import cryorl.features
from cryorl import CryoEMEnv, simulate_atlas
from cryorl.agents.imitation import Demonstrations, collect
from cryorl.agents.learned import RECORD, LearnedPolicy
from cryorl.agents.network import (
    HOLE_FEATURE_BLOCKS,
    HOLE_FEATURE_NAMES,
    N_HOLE_FEATURES,
    FeatureBlock,
    HoleScorer,
    hole_features,
    observation_to_tensors,
)
from cryorl.agents.signals import PlannerSignals
from cryorl.observation import (
    COMPACT_SCHEMA,
    LEARNER_SCHEMA,
    SIGNAL_SCHEMA,
    ObservationKey,
    key_names,
    observation_space,
)
from cryorl.resources import PRETRAINED_DIR
from cryorl.vector_env import CryoEMVectorEnv, unstepped_keys

REPO = Path(__file__).resolve().parents[1]
SMALL = {"n_holes": 120, "n_patches": 10, "n_squares": 3, "n_tiles": 2}
FOO = ObservationKey("foo", True, (2,), np.float32, 0.0, 1.0, "", "step", "a planted per-hole feature, 2 columns")


def _small_env(**kwargs) -> CryoEMEnv:
    return CryoEMEnv(simulate_atlas(5, **SMALL), budget=60, max_holes=130, **kwargs)


def _assert_is(space, schema, max_holes, batch=()):
    assert set(space.spaces) == set(key_names(schema)) and len(space.spaces) == len(schema)
    for key in schema:
        box = space[key.name]
        low, high = key.bounds(max_holes)
        assert box.shape == (*batch, *key.shape(max_holes)) and box.dtype == key.dtype, key.name
        assert np.all(box.low == low) and np.all(box.high == high), key.name


def test_the_spaces_and_observations_are_the_schema():
    env = _small_env()
    m = env.max_holes
    _assert_is(env.observation_space, COMPACT_SCHEMA, m)
    _assert_is(PlannerSignals(env).observation_space, LEARNER_SCHEMA, m)
    vec = CryoEMVectorEnv(3, grid=SMALL, max_holes=m)
    _assert_is(vec.single_observation_space, COMPACT_SCHEMA, m)
    _assert_is(vec.observation_space, COMPACT_SCHEMA, m, batch=(3,))
    obs, _ = PlannerSignals(env).reset(seed=0)
    batched, _ = vec.reset(seed=0)
    for key in LEARNER_SCHEMA:                          # what observe() returns is what the schema declares
        assert obs[key.name].shape == key.shape(m) and obs[key.name].dtype == key.dtype, key.name
    for key in COMPACT_SCHEMA:
        assert batched[key.name].shape == (3, *key.shape(m)) and batched[key.name].dtype == key.dtype, key.name
    assert list(obs) == list(key_names(LEARNER_SCHEMA))


def _check_bounds_and_changes(observations: list[dict], max_holes: int) -> None:
    first = observations[0]
    for obs in observations:
        for key in LEARNER_SCHEMA:
            value, (low, high) = obs[key.name], key.bounds(max_holes)
            assert value.dtype == key.dtype and value.shape == key.shape(max_holes), key.name
            assert np.all(np.isfinite(value)) and value.min() >= low and value.max() <= high, \
                f"{key.name} in [{value.min()}, {value.max()}], declared [{low}, {high}]"
            if key.changes == "episode":
                np.testing.assert_array_equal(value, first[key.name], err_msg=key.name)
            elif key.changes == "one_hot" and obs["action_mask"].any():
                assert value.sum() == 1, key.name
            elif key.changes == "exposed":
                assert np.all(value[obs["visited"] == 0] == 0), key.name
            elif key.changes == "unvisited":
                np.testing.assert_array_equal(value, obs["is_hole"] & (1 - obs["visited"]), err_msg=key.name)


def _episode(env, seed: int, follow=lambda obs: int(np.argmax(obs["planner_pick"]))) -> list[dict]:
    obs, _ = env.reset(seed=seed)
    observations, done = [obs], False
    while not done:
        obs, _, terminated, truncated, _ = env.step(follow(obs))
        observations.append(obs)
        done = terminated or truncated
    return observations


def test_every_observed_array_respects_its_declared_bounds_on_the_real_grid(aldolase):
    """Worst holes first (failed CTF fits, 100000 Å in the files, must be observed at the 20 Å cap)."""
    env = PlannerSignals(CryoEMEnv(aldolase, budget=1000))
    worst = np.argsort(-np.nan_to_num(aldolase.true_ctf, nan=0.0), kind="stable")
    observations = _episode(env, seed=0, follow=lambda obs: int(worst[obs["action_mask"][worst] > 0][0]))
    assert len(observations) > 100
    _check_bounds_and_changes(observations, env.unwrapped.max_holes)
    measured = observations[-1]["measured_ctf"][observations[-1]["visited"] > 0]
    assert measured.max() == 20.0 and (aldolase.true_ctf >= 100).sum() > 10


def test_every_observed_array_respects_its_declared_bounds_with_classifier_predictions_and_padding():
    from cryorl.quality import as_classifier

    rng = np.random.default_rng(0)
    env = PlannerSignals(CryoEMEnv(as_classifier(simulate_atlas(2, **SMALL)), budget=90, max_holes=150))
    observations = _episode(env, seed=1, follow=lambda obs: int(rng.choice(np.flatnonzero(obs["action_mask"]))))
    _check_bounds_and_changes(observations, 150)


class _Foo(gym.ObservationWrapper):
    """The planted feature's producer: the 'one edit' of a new key besides its declaration."""

    def __init__(self, env, schema):
        super().__init__(env)
        self.observation_space = observation_space(schema, env.observation_space["action_mask"].shape[0])

    def observation(self, observation):
        visited = observation["visited"].astype(np.float32)
        return {**observation, "foo": np.stack([visited, 0.5 * visited], axis=-1)}


def test_a_planted_key_and_feature_flow_through_without_editing_other_modules():
    schema = LEARNER_SCHEMA + (FOO,)
    env = _Foo(PlannerSignals(_small_env()), schema)
    m = env.observation_space["action_mask"].shape[0]
    assert env.observation_space["foo"] == gym.spaces.Box(0.0, 1.0, (m, 2), np.float32)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)

    # tensors: the batch rank comes from the declared shape (m, 2), for one observation and for a batch
    assert observation_to_tensors(obs, schema=schema)["foo"].shape == (1, m, 2)
    stacked = {k: np.stack([v, v, v]) for k, v in obs.items()}
    assert observation_to_tensors(stacked, schema=schema)["foo"].shape == (3, m, 2)
    with pytest.raises(KeyError, match="'foo' is not declared in the observation schema"):
        observation_to_tensors(obs)

    # imitation buffers: kept per step and handed back in batches, with no key list to edit
    demonstrations = collect([env], None, 40, demonstrations=Demonstrations(0.97, schema=schema))
    index = np.arange(len(demonstrations))
    batch, targets = demonstrations.batch(index)
    assert set(batch) == set(key_names(schema))
    visited = batch["visited"]
    torch.testing.assert_close(batch["foo"], torch.stack([visited, 0.5 * visited], dim=-1))

    # network inputs: a planted block adds its column; the input count follows
    block = FeatureBlock("foo", ("foo_sum",), lambda x: [x.obs["foo"].sum(-1)])
    blocks = HOLE_FEATURE_BLOCKS + (block,)
    features = hole_features(batch, blocks)
    assert features.shape == (len(index), m, N_HOLE_FEATURES + 1)
    torch.testing.assert_close(features[..., -1], 1.5 * visited * batch["is_hole"])
    torch.testing.assert_close(features[..., :-1], hole_features(batch))
    scorer = HoleScorer(hidden=8, blocks=blocks)
    assert scorer.encoder[0].in_features == N_HOLE_FEATURES + 1 and scorer.feature_names[-1] == "foo_sum"
    assert scorer(batch).shape == (len(index), m)

    # the vector environment refuses a per-step key it does not update, by name
    assert unstepped_keys(COMPACT_SCHEMA) == [] and unstepped_keys(COMPACT_SCHEMA + (FOO,)) == ["foo"]


def test_the_input_count_is_what_the_feature_blocks_compute():
    env = PlannerSignals(_small_env())
    obs = observation_to_tensors(env.reset(seed=0)[0])
    assert hole_features(obs).shape[-1] == N_HOLE_FEATURES == len(HOLE_FEATURE_NAMES)
    assert len(set(HOLE_FEATURE_NAMES)) == N_HOLE_FEATURES
    assert HoleScorer().encoder[0].in_features == N_HOLE_FEATURES
    wrong = FeatureBlock("wrong", ("a", "b"), lambda x: [x.margin])
    with pytest.raises(ValueError, match="feature block 'wrong' computed 1 columns but names 2"):
        hole_features(obs, HOLE_FEATURE_BLOCKS + (wrong,))


def _saved(tmp_path: Path, **scorer_kwargs) -> Path:
    torch.manual_seed(0)
    return LearnedPolicy(HoleScorer(hidden=8, **scorer_kwargs), "x").save(tmp_path / "x")


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def test_a_policy_folder_records_its_inputs_and_loads_back(tmp_path):
    folder = _saved(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["observation_keys"] == list(key_names(LEARNER_SCHEMA))
    assert config["hole_features"] == list(HOLE_FEATURE_NAMES) and config["n_hole_features"] == N_HOLE_FEATURES
    policy = LearnedPolicy.load(folder)
    assert policy.metadata == {} and policy.observation_keys == key_names(LEARNER_SCHEMA)
    policy.reset(_small_env())                              # the environment has what it was trained with


def test_loading_a_policy_trained_with_other_observation_keys_names_the_difference(tmp_path):
    folder = _saved(tmp_path)
    keys = [k for k in key_names(LEARNER_SCHEMA) if k != "measured_ctf"] + ["foo"]
    _edit_config(folder, observation_keys=keys)
    with pytest.raises(ValueError) as error:
        LearnedPolicy.load(folder)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"policy {folder} was trained with observation keys ")
    assert message.endswith("lacks foo")
    # an observation grown since training (here by measured_ctf) still serves the policy: it reads what it knew
    _edit_config(folder, observation_keys=keys[:-1])
    LearnedPolicy.load(folder).reset(_small_env())
    # and an environment without a key the policy was trained with, at reset
    policy = LearnedPolicy(HoleScorer(hidden=8), "runs/x", observation_keys=(*key_names(LEARNER_SCHEMA), "foo"))
    with pytest.raises(ValueError, match=r"^policy runs/x was trained with observation keys .*; this environment "
                                         r"lacks foo$"):
        policy.reset(_small_env())


def test_loading_a_policy_trained_with_other_input_features_names_the_difference(tmp_path):
    block = FeatureBlock("foo", ("foo_sum",), lambda x: [x.obs["foo"].sum(-1)])
    folder = _saved(tmp_path, blocks=HOLE_FEATURE_BLOCKS + (block,))
    with pytest.raises(ValueError, match=r"^policy .*x was trained with input features .*foo_sum; this cryorl's "
                                         r"network \(cryorl/agents/network.py\) lacks foo_sum$"):
        LearnedPolicy.load(folder)
    names = list(HOLE_FEATURE_NAMES)
    _edit_config(folder, hole_features=names[1::-1] + names[2:], n_hole_features=N_HOLE_FEATURES)
    with pytest.raises(ValueError, match="has them in another order$"):
        LearnedPolicy.load(folder)
    _edit_config(folder, hole_features=names, n_hole_features=N_HOLE_FEATURES + 1)
    with pytest.raises(ValueError, match=f"trained with {N_HOLE_FEATURES + 1} input features per hole; this "
                                         f"cryorl's network has {N_HOLE_FEATURES}$"):
        LearnedPolicy.load(folder)


def test_a_policy_saved_before_the_record_with_other_inputs_is_refused_in_one_line(tmp_path):
    block = FeatureBlock("foo", ("foo_sum",), lambda x: [x.obs["foo"].sum(-1)])
    folder = _saved(tmp_path, blocks=HOLE_FEATURE_BLOCKS + (block,))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k not in RECORD}))
    with pytest.raises(ValueError, match=f"^policy {folder} was trained with {N_HOLE_FEATURES + 1} input features "
                                         f"per hole; this cryorl's network has {N_HOLE_FEATURES}$"):
        LearnedPolicy.load(folder)


@pytest.mark.parametrize("name", ["dqn", "ppo"])
def test_a_shipped_policy_saved_before_the_record_loads_as_the_current_schema(name, tmp_path):
    """The shipped policies record the schema they were trained with (the current one); the same folder without
    the record (as policies saved before it was kept) loads as the current schema."""
    config = json.loads((PRETRAINED_DIR / name / "config.json").read_text())
    assert config["hole_features"] == list(HOLE_FEATURE_NAMES)
    assert config["n_hole_features"] == N_HOLE_FEATURES
    assert set(config["observation_keys"]) == set(key_names(LEARNER_SCHEMA))
    folder = shutil.copytree(PRETRAINED_DIR / name, tmp_path / name)
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k not in RECORD}))
    policy = LearnedPolicy.load(folder)
    assert policy.observation_keys == key_names(LEARNER_SCHEMA)
    env = _small_env()
    obs, _ = env.reset(seed=0)
    policy.reset(env)
    assert obs["action_mask"][policy.act(obs, obs["action_mask"])] == 1


def _documented_keys(text: str, quote: str = "``") -> list[str]:
    return re.findall(f"{quote}([a-z_]+){quote}", text)


def test_the_docs_list_every_key_of_the_schema():
    doc = cryorl.features.__doc__
    compact = doc[doc.index("``compact``"):doc.index("``cryorl``\n")]
    assert _documented_keys(compact[compact.index("Keys:"):]) == list(key_names(COMPACT_SCHEMA))
    readme = (REPO / "README.md").read_text()
    bullet = readme[readme.index('  - `"compact"` (default)'):readme.index('  - `"cryorl"`')]
    assert set(key_names(COMPACT_SCHEMA)) <= set(_documented_keys(bullet, "`"))
    assert "cryorl/observation.py" in bullet
    signals = cryorl.agents.signals.__doc__
    assert set(key_names(SIGNAL_SCHEMA)) <= set(_documented_keys(signals))


def test_each_level_s_group_statistics_count_the_holes_of_that_tile_square_and_patch():
    # two states of one episode and one of another grid (more groups, fewer holes), batched and padded: each hole's
    # tile/square/patch columns are the counts of its own group (levels summed in one table must not mix, nor batch
    # rows, nor grids whose ids end elsewhere, nor padding)
    env = PlannerSignals(_small_env())
    states = [env.reset(seed=0)[0]]
    for _ in range(6):
        states.append(env.step(int(np.argmax(states[-1]["planner_pick"])))[0])
    other_grid = simulate_atlas(11, n_holes=90, n_patches=14, n_squares=4, n_tiles=3)
    other = PlannerSignals(CryoEMEnv(other_grid, budget=60, max_holes=130))
    rows = [(states[0], env), (states[-1], env), (other.reset(seed=1)[0], other)]
    batch = observation_to_tensors({key: np.stack([state[key] for state, _ in rows]) for key in states[0]})
    assert (states[-1]["visited"] > 0).sum() >= (states[0]["visited"] > 0).sum() + 6     # the rows differ
    features = hole_features(batch).numpy()
    column = {name: i for i, name in enumerate(HOLE_FEATURE_NAMES)}
    for row, (state, source) in enumerate(rows):
        atlas = source.unwrapped.atlas
        n = len(atlas)
        visited = state["visited"][:n] > 0
        for level, ids in (("tile", atlas.tile), ("square", atlas.square), ("patch", atlas.patch)):
            unvisited = np.bincount(ids, ~visited)[ids]
            exposed = np.bincount(ids, visited)[ids]
            np.testing.assert_allclose(features[row, :n, column[f"{level}_log_unvisited"]], np.log1p(unvisited),
                                       rtol=1e-6)
            np.testing.assert_allclose(features[row, :n, column[f"{level}_log_exposed"]], np.log1p(exposed),
                                       rtol=1e-6)
        assert not features[row, n:].any()                               # padded rows are 0
        alone = observation_to_tensors({key: state[key][None] for key in state})
        np.testing.assert_array_equal(features[row], hole_features(alone)[0].numpy())   # every column, unbatched
