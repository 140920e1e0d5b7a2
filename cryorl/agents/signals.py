"""The planner's signals in the observation: what the learned agents start from and learn to improve on.

Three keys are added to the compact observation (:mod:`cryorl.features`), declared in
:data:`cryorl.observation.SIGNAL_SCHEMA`, each computed by the budget-aware planner
(:class:`~cryorl.agents.planner.PlannerPolicy`) for the episode's state:

- ``planner_pick`` — one-hot: the hole the planner would expose next;
- ``planner_plan`` — 1 for every hole its plan for the time left takes;
- ``planner_price`` — the price of a hole move under that plan (expected good exposures a hole must promise to be
  worth its minute; 1 on the last move).

With them the shared per-hole network can represent the planner exactly and learn where to deviate from it. The
same code adds them while training (:class:`PlannerSignals`, a Gymnasium observation wrapper) and while acting
(:class:`SignalSource`, used by :class:`~cryorl.agents.learned.LearnedPolicy`), so both see identical inputs.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from cryorl.agents.planner import PlannerPolicy
from cryorl.observation import SIGNAL_SCHEMA, key_names, observation_space

__all__ = ["SIGNAL_KEYS", "SignalSource", "PlannerSignals"]

SIGNAL_KEYS = key_names(SIGNAL_SCHEMA)


class SignalSource:
    """Computes the planner's signals for one environment; ``reset(env)`` at the start of every episode."""

    def __init__(self, planner: PlannerPolicy | None = None) -> None:
        self.planner = planner or PlannerPolicy()
        self.env = None

    def reset(self, env) -> None:
        self.env = env.unwrapped
        self.planner.reset(self.env)

    def signals(self, action_mask: np.ndarray) -> dict[str, np.ndarray]:
        if self.env is None:
            raise RuntimeError("SignalSource.signals before reset(env)")
        m, n = len(action_mask), self.planner.n
        pick = np.zeros(m, np.int8)
        plan = np.zeros(m, np.int8)
        valid = np.asarray(action_mask[:n], dtype=bool)
        if valid.any():
            decision = self.planner.decide(valid)
            pick[decision.hole] = 1
            plan[:n] = decision.in_plan
            price = min(float(decision.price) * float(self.planner.costs[0]), 1.0)
        else:                                                        # the episode has ended
            price = 1.0
        return {"planner_pick": pick, "planner_plan": plan, "planner_price": np.array([price], np.float32)}

    def observe(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``observation`` with the signals added (a new dict; the arrays of ``observation`` are not copied)."""
        return {**observation, **self.signals(observation["action_mask"])}


class PlannerSignals(gym.ObservationWrapper):
    """Adds the planner's signals to a compact-observation environment (see the module docstring)."""

    def __init__(self, env: gym.Env, planner: PlannerPolicy | None = None) -> None:
        super().__init__(env)
        if getattr(env.unwrapped, "feature_set_name", "compact") != "compact":
            raise ValueError("PlannerSignals needs feature_set='compact'")
        m = env.observation_space["action_mask"].shape[0]
        self.observation_space = spaces.Dict({**env.observation_space.spaces,
                                              **observation_space(SIGNAL_SCHEMA, m).spaces})
        self.source = SignalSource(planner)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        observation, info = self.env.reset(seed=seed, options=options)
        self.source.reset(self.env)
        return self.observation(observation), info

    def observation(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.source.observe(observation)
