"""Stable-Baselines3 / sb3-contrib at their narrowest seams: per-hole scoring and action masks.

- :class:`MaskedDQN` — DQN whose ε-greedy exploration and warm-up sample only valid holes (``predict`` and
  ``_sample_action``), optionally guided: with probability ``exploration_guide`` an exploratory action is the
  budget-aware planner's pick (its ``planner_pick`` signal) instead of a uniformly random hole; its Q-network
  (:class:`HoleQNetwork`, made by ``HoleDQNPolicy.make_q_net``) returns ``-1e8`` for invalid holes, so both acting
  and the bootstrap target (``max`` over next Q-values) are masked.
- :class:`HoleMaskablePolicy` — sb3-contrib's MaskableActorCriticPolicy with the per-hole scores as logits and a
  pooled value head (``_build_mlp_extractor`` and ``_build``).

Training loops are SB3's own. Weights are the :class:`~cryorl.agents.network.HoleScorer`'s and do not depend on
the number of holes.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3 import DQN
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from cryorl.agents.network import HoleScorer, guide_picks

__all__ = ["ObservationPassThrough", "HoleQNetwork", "HoleDQNPolicy", "MaskedDQN", "HoleMaskablePolicy",
           "sample_valid_actions"]


def sample_valid_actions(action_mask: np.ndarray) -> np.ndarray:
    """One uniformly random valid action per row of a (n_envs, n) or (n,) mask."""
    mask = np.asarray(action_mask) > 0
    scores = np.random.random(mask.shape) * mask + mask            # valid in (1, 2), invalid 0
    return np.argmax(scores, axis=-1)


class ObservationPassThrough(BaseFeaturesExtractor):
    """Hands the (preprocessed) dict observation to the network unchanged; the network does its own features."""

    def __init__(self, observation_space: spaces.Dict) -> None:
        super().__init__(observation_space, features_dim=1)

    def forward(self, observations: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return observations


class HoleQNetwork(BasePolicy):
    """Q-values of every hole from one shared :class:`HoleScorer`; invalid holes get ``-1e8``."""

    def __init__(self, observation_space, action_space, features_extractor, features_dim, net_arch=None,
                 activation_fn=nn.ReLU, normalize_images=False) -> None:
        super().__init__(observation_space, action_space, features_extractor=features_extractor,
                         normalize_images=False)
        self.net_arch = net_arch or [64]
        self.scorer = HoleScorer(hidden=self.net_arch[0])

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.scorer(self.extract_features(obs, self.features_extractor))

    def _predict(self, observation, deterministic: bool = True) -> torch.Tensor:
        return self(observation).argmax(dim=1).reshape(-1)

    def _get_constructor_parameters(self) -> dict:
        data = super()._get_constructor_parameters()
        data.update(net_arch=self.net_arch, features_extractor=self.features_extractor)
        return data


class HoleDQNPolicy(DQNPolicy):
    """DQN policy whose Q-network is a :class:`HoleQNetwork` (``net_arch[0]`` = hidden width)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["features_extractor_class"] = ObservationPassThrough
        kwargs["normalize_images"] = False
        super().__init__(*args, **kwargs)

    def make_q_net(self) -> HoleQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return HoleQNetwork(**net_args).to(self.device)


class MaskedDQN(DQN):
    """DQN whose exploration (ε-greedy and warm-up) samples only valid holes, from ``observation["action_mask"]``.

    ``exploration_guide`` (0-1, default 0): the share of exploratory actions that follow the planner's pick
    instead of a uniformly random valid hole, so that the replay buffer holds competent trajectories.
    """

    policy_aliases = {**DQN.policy_aliases, "HolePolicy": HoleDQNPolicy}

    def __init__(self, *args, exploration_guide: float = 0.0, **kwargs) -> None:
        if not 0.0 <= exploration_guide <= 1.0:
            raise ValueError(f"exploration_guide must be in [0, 1], not {exploration_guide}")
        self.exploration_guide = exploration_guide
        super().__init__(*args, **kwargs)

    def _explore(self, observation) -> np.ndarray:
        random_actions = sample_valid_actions(observation["action_mask"])
        if self.exploration_guide <= 0.0:
            return random_actions
        guided = guide_picks(observation).reshape(random_actions.shape)
        use_guide = np.random.random(random_actions.shape) < self.exploration_guide
        return np.where(use_guide, guided, random_actions)

    def predict(self, observation: dict[str, np.ndarray], state: tuple | None = None,
                episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, tuple | None]:
        if not deterministic and np.random.rand() < self.exploration_rate:
            return self._explore(observation), state
        return self.policy.predict(observation, state, episode_start, deterministic)

    def _sample_action(self, learning_starts: int, action_noise=None,
                       n_envs: int = 1) -> tuple[np.ndarray, np.ndarray]:
        if self.num_timesteps < learning_starts:
            action = self._explore(self._last_obs).reshape(n_envs)
            return action, action
        return super()._sample_action(learning_starts, action_noise, n_envs)


class _HoleActorCritic(nn.Module):
    """Stands where SB3 puts its MlpExtractor: latent_pi are the per-hole logits, latent_vf the value."""

    latent_dim_pi = 1
    latent_dim_vf = 1

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.scorer = HoleScorer(hidden=hidden, mask_invalid=False)

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scorer.scores_and_value(features)

    def forward_actor(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.scorer(features)

    def forward_critic(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.scorer.value(features)


class HoleMaskablePolicy(MaskableActorCriticPolicy):
    """MaskablePPO policy: per-hole logits from a shared :class:`HoleScorer`, pooled value head.

    ``net_arch`` is ``[hidden]`` (default 64). Invalid holes are masked by sb3-contrib's MaskableCategorical.
    """

    def __init__(self, *args, net_arch=None, **kwargs) -> None:
        self.hidden = (net_arch or [64])[0]
        kwargs["features_extractor_class"] = ObservationPassThrough
        kwargs["normalize_images"] = False
        kwargs["share_features_extractor"] = True
        super().__init__(*args, net_arch=[self.hidden], **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = _HoleActorCritic(self.hidden)

    def _build(self, lr_schedule: Callable[[float], float]) -> None:
        super()._build(lr_schedule)
        # the logits and the value come out of the scorer: no extra layers, and an optimizer without the unused ones
        self.action_net = nn.Identity()
        self.value_net = nn.Identity()
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
