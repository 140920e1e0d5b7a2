"""Every registered policy, picked up from the registry: valid actions on a grid padded to more rows than holes,
seeded determinism, and both kinds of predictions (a regressor's CTFMaxRes, a classifier's probabilities)."""
from __future__ import annotations

import numpy as np
import pytest

from cryorl import CryoEMEnv
from cryorl.agents import evaluate_policy, make_policy, policy_entries, policy_names
from cryorl.quality import as_classifier
from cryorl.synth import GridSpec, simulate_atlas

ATLAS = simulate_atlas(5, GridSpec.with_holes(160))
NAMES = [entry.name for entry in policy_entries()]


def test_the_registry_lists_every_agent_once_with_its_description():
    assert {"random", "greedy-local", "greedy-2t", "planner", "oracle", "dqn", "ppo"} <= set(NAMES)
    assert len(NAMES) == len(set(NAMES)) == len(policy_names())
    assert all(entry.description for entry in policy_entries())


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
@pytest.mark.parametrize("name", NAMES)
def test_every_registered_policy_acts_validly_and_deterministically(name, kind):
    atlas = ATLAS if kind == "regressor" else as_classifier(ATLAS)
    runs = []
    for _ in range(2):
        env = CryoEMEnv(atlas, max_holes=200, budget=45.0)      # 40 padded rows the mask must keep out
        frame = evaluate_policy(make_policy(name, seed=3), env, episodes=2, seed=7, budgets=(45.0,))
        steps = frame[frame["step"] > 0]
        assert (steps["switch_level"] >= 0).all(), f"{name} chose an invalid action"
        assert steps.groupby("episode")["hole"].apply(lambda h: h.is_unique).all()
        runs.append(frame[["episode", "step", "hole"]].to_numpy())
    assert np.array_equal(runs[0], runs[1]), f"{name} is not deterministic under one seed"


def test_an_unknown_agent_is_named_whatever_its_length():
    """A 300-character name is an unknown agent (cut in the message), not an operating-system error."""
    with pytest.raises(ValueError, match=r"unknown agent 'xxxx.*; choose one of random") as error:
        make_policy("x" * 300)
    assert len(str(error.value)) < 600
