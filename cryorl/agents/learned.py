"""Learned policies as plain files: a :class:`HoleScorer` state dict plus a JSON config, loadable on any grid size.

A learned policy reads the compact observation plus the planner's signals (:mod:`cryorl.agents.signals`), which it
computes itself while acting, exactly as :class:`~cryorl.agents.signals.PlannerSignals` does while training.

A policy folder records the observation keys it was trained with and the network's input features (names and
count); loading it where they differ raises one line naming what differs. A folder without that record (the
shipped policies, saved before it existed) is taken as trained with the current ones.

Loading uses ``torch.load(weights_only=True)``: a policy file cannot run code. (SB3 ``.zip`` checkpoints, used to
resume training, unpickle Python objects: load those only from sources you trust.)
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from cryorl.agents.base import Policy
from cryorl.agents.network import HoleScorer, observation_to_tensors
from cryorl.agents.signals import SIGNAL_KEYS, SignalSource
from cryorl.fileio import NotWeightsError, atomic_path, atomic_write_text, load_weights
from cryorl.observation import LEARNER_SCHEMA, describe_difference, key_names

__all__ = ["LearnedPolicy", "scorer_from_model"]

WEIGHTS = "scorer.pt"
CONFIG = "config.json"
FORMAT = "cryorl-hole-scorer/2"
"""Version 2: inputs include the planner's signals and calibrated probabilities (version 1 policies: cryorl < 0.2)."""
RECORD = ("observation_keys", "hole_features", "n_hole_features")
"""What ``config.json`` records of the inputs a policy was trained with (absent from folders saved before it)."""


def scorer_from_model(model) -> HoleScorer:
    """The HoleScorer inside a trained MaskedDQN or MaskablePPO model."""
    policy = model.policy
    if hasattr(policy, "q_net"):
        return policy.q_net.scorer
    if hasattr(policy, "mlp_extractor") and hasattr(policy.mlp_extractor, "scorer"):
        return policy.mlp_extractor.scorer
    raise TypeError(f"{type(model).__name__} has no cryorl HoleScorer (train it with cryorl.agents.sb3)")


class LearnedPolicy(Policy):
    """Acts greedily on a :class:`HoleScorer`'s per-hole scores; works on any number of holes.

    Needs the environment's ``compact`` observation; ``observation_keys``: the keys it was trained with (default:
    :data:`cryorl.observation.LEARNER_SCHEMA`'s), checked against the environment's (and the planner's signals,
    which the policy computes itself) at every ``reset``.
    """

    def __init__(self, scorer: HoleScorer, name: str = "learned", metadata: dict | None = None,
                 observation_keys: tuple[str, ...] | None = None) -> None:
        self.scorer = scorer.eval()
        self.name = name
        self.metadata = dict(metadata or {})
        self.observation_keys = tuple(observation_keys or key_names(LEARNER_SCHEMA))
        self.signals = SignalSource()

    @classmethod
    def from_model(cls, model, name: str, metadata: dict | None = None) -> LearnedPolicy:
        trained = scorer_from_model(model)
        scorer = HoleScorer(hidden=trained.hidden, blocks=trained.blocks)
        scorer.load_state_dict(trained.state_dict())
        space = getattr(getattr(model, "observation_space", None), "spaces", None)
        return cls(scorer, name, metadata, tuple(space) if space is not None else None)

    def reset(self, env) -> None:
        if getattr(env, "feature_set_name", "compact") != "compact":
            raise ValueError(f"{self.name} needs feature_set='compact', the environment has "
                             f"{env.feature_set_name!r}")
        available = [*env.observation_space.spaces, *(k for k in SIGNAL_KEYS if k not in env.observation_space.spaces)]
        _check_same(self.name, "observation keys", self.observation_keys, available, "this environment",
                    extra_ok=True)
        self.signals.reset(env)

    @torch.inference_mode()                                # no autograd graph: a decision only reads scores
    def act(self, observation, action_mask) -> int:
        if not all(key in observation for key in SIGNAL_KEYS):
            observation = self.signals.observe(observation)
        scores = self.scorer(observation_to_tensors(observation))[0].numpy()
        scores = np.where(np.asarray(action_mask) > 0, scores, -np.inf)
        return int(np.argmax(scores))

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``scorer.pt`` (state dict) and ``config.json`` (with the observation keys and input features it
        was trained with) into ``directory``, atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / WEIGHTS) as tmp:
            torch.save(self.scorer.state_dict(), tmp)
        names = list(self.scorer.feature_names)
        config = {"format": FORMAT, "name": self.name, "hidden": self.scorer.hidden,
                  "observation_keys": list(self.observation_keys), "hole_features": names,
                  "n_hole_features": len(names), **self.metadata}
        atomic_write_text(directory / CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, name: str | None = None) -> LearnedPolicy:
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG, directory / WEIGHTS
        if not config_path.exists() or not weights_path.exists():
            raise FileNotFoundError(f"{directory} is not a saved cryorl policy (needs {CONFIG} and {WEIGHTS})")
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{config_path}: not valid JSON ({error})") from None
        if config.get("format") == "cryorl-hole-scorer/1":
            raise ValueError(f"{config_path}: a policy of cryorl < 0.2 (format cryorl-hole-scorer/1, without the "
                             "planner's signals); retrain it with `cryorl train`")
        if config.get("format") != FORMAT:
            raise ValueError(f"{config_path}: unknown policy format {config.get('format')!r}")
        scorer = HoleScorer(hidden=int(config["hidden"]))
        try:
            state = load_weights(weights_path)
        except NotWeightsError:
            raise
        except Exception as error:  # corrupt file
            raise ValueError(f"{weights_path}: cannot load the policy weights ({error})") from None
        _check_record(directory, config, scorer, state)
        try:
            scorer.load_state_dict(state)
        except Exception as error:  # wrong names or shapes: torch's message spans lines
            raise ValueError(f"{weights_path}: cannot load the policy weights ({' '.join(str(error).split())})") \
                from None
        metadata = {k: v for k, v in config.items() if k not in ("format", "name", "hidden", *RECORD)}
        return cls(scorer, name or config.get("name", directory.name), metadata, config.get("observation_keys"))


def _check_same(policy: str, what: str, trained, available, here: str, ordered: bool = False,
                extra_ok: bool = False) -> None:
    """Refuse, in one line naming the difference, when ``available`` is not what the policy was trained with
    (``extra_ok``: only when it lacks some of it)."""
    difference = describe_difference(trained, [name for name in available if name in set(trained)] if extra_ok
                                     else available)
    if not difference and ordered and list(trained) != list(available):
        difference = "has them in another order"
    if difference:
        raise ValueError(f"policy {policy} was trained with {what} {', '.join(trained)}; {here} {difference}")


def _check_record(directory: Path, config: dict, scorer: HoleScorer, state: dict) -> None:
    """The observation keys and input features ``config`` records against this cryorl's; a folder saved before the
    record is checked by its first layer's width."""
    if "observation_keys" in config:
        _check_same(str(directory), "observation keys", config["observation_keys"], key_names(LEARNER_SCHEMA),
                    "this cryorl's observation (cryorl/observation.py)", extra_ok=True)
    if "hole_features" in config:
        _check_same(str(directory), "input features", config["hole_features"], scorer.feature_names,
                    "this cryorl's network (cryorl/agents/network.py)", ordered=True)
    first_layer = state.get("encoder.0.weight")
    n = config.get("n_hole_features", first_layer.shape[1] if isinstance(first_layer, torch.Tensor) and
                   first_layer.dim() == 2 else len(scorer.feature_names))
    if n != len(scorer.feature_names):
        raise ValueError(f"policy {directory} was trained with {n} input features per hole; this cryorl's network "
                         f"has {len(scorer.feature_names)}")
