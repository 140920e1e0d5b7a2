"""One protocol for every policy: baselines, learned agents and human traces."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

__all__ = ["Policy"]


class Policy(ABC):
    """Chooses the next hole to expose.

    The evaluation loop calls ``reset(env)`` at the start of every episode (``env`` is the unwrapped
    :class:`~cryorl.env.CryoEMEnv`; planners read the grid, costs and episode state from it), may ask
    ``start_hole(env)`` for a preferred start (None: the seeded random start), then ``act(observation, mask)``
    once per step.
    """

    name: str = "policy"

    def reset(self, env) -> None:  # noqa: B027 - optional hook: most policies need no episode state
        """Start a new episode on ``env``."""

    def start_hole(self, env) -> int | None:
        """A hole this policy insists on starting from (e.g. a human trace's first hole), or None."""
        return None

    @abstractmethod
    def act(self, observation: dict[str, np.ndarray], action_mask: np.ndarray) -> int:
        """The index of the next hole; must be a valid action (``action_mask[hole]`` true)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
