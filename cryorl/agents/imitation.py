"""Imitation of the budget-aware planner: the learned agents' starting point before reinforcement learning.

DAgger (Ross et al., 2011) with the planner as the expert: round 0 follows the planner; later rounds follow the
network being trained (the planner with probability ``follow_planner``) and label every state it reaches with the
planner's pick, which the observation already carries (``planner_pick``, :mod:`cryorl.agents.signals`). After each
round the :class:`~cryorl.agents.network.HoleScorer` is fitted on everything collected so far:

- for PPO (``loss="policy"``): cross-entropy of the per-hole logits against the planner's pick, and the value head
  regressed on the discounted return that followed;
- for DQN (``loss="q"``): DQfD's large-margin loss (Hester et al., 2018) — the planner's pick must score
  ``margin`` above every other hole — plus its Q-value regressed on the discounted return that followed when the
  pick was the action taken, so the Q-values start on the scale the TD updates will keep.

Observations are stored compactly — per episode the grid's static arrays, per step the visited holes, the plan and
a few numbers — so a round of 20,000 steps on 500-hole grids takes ~20 MB, and batches are assembled in torch.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import gymnasium as gym
import numpy as np
import torch

from cryorl.agents.network import HoleScorer
from cryorl.observation import LEARNER_SCHEMA, ObservationKey

__all__ = ["Demonstrations", "collect", "fit", "imitate"]

_PER_EPISODE = ("episode", "exposed")
"""How a key changes if the buffers keep it once per episode (an ``exposed`` key: the episode's final values)."""


@dataclass
class Demonstrations:
    """States visited while following a behaviour policy, each labelled with the planner's pick.

    Each key of ``schema`` is kept by how it changes within an episode (:class:`cryorl.observation.ObservationKey`):
    ``episode`` keys once per episode, ``exposed`` keys as the episode's final values (shown where ``visited``),
    ``step`` keys per step, ``one_hot`` keys per step as the index of their 1, ``unvisited`` keys rebuilt from
    ``is_hole`` and ``visited``. ``planner_pick`` is also the label.
    """

    gamma: float
    schema: tuple[ObservationKey, ...] = LEARNER_SCHEMA
    episodes: dict[str, list[np.ndarray]] = field(init=False)     # per episode, the keys kept once per episode
    steps: dict[str, list] = field(init=False)                    # per step: the other stored keys and the targets

    def __post_init__(self) -> None:
        self.episodes = {key.name: [] for key in self.schema if key.changes in _PER_EPISODE}
        stepped = [key.name for key in self.schema if key.changes in ("step", "one_hot")]
        self.steps = {name: [] for name in ("episode", *stepped, "action", "return")}
        self._n_episodes = 0

    def __len__(self) -> int:
        return len(self.steps["episode"])

    def _start_episode(self, observation: dict[str, np.ndarray]) -> int:
        for key in self.schema:
            if key.changes == "episode":
                self.episodes[key.name].append(np.asarray(observation[key.name], key.dtype).copy())
            elif key.changes == "exposed":                    # filled in when the episode ends
                self.episodes[key.name].append(np.zeros_like(observation[key.name], key.dtype))
        self._n_episodes += 1
        return self._n_episodes - 1

    def _record(self, episode: int, observation: dict[str, np.ndarray], action: int, reward: float) -> None:
        s = self.steps
        s["episode"].append(episode)
        for key in self.schema:
            if key.changes == "step":
                s[key.name].append(np.asarray(observation[key.name], key.dtype).copy())
            elif key.changes == "one_hot":
                s[key.name].append(int(np.argmax(observation[key.name])))
        s["action"].append(int(action))
        s["return"].append(float(reward))                      # turned into the return when the episode ends

    def _end_episode(self, episode: int, final: dict[str, np.ndarray], steps: list[int]) -> None:
        """Store what the episode measured and turn its steps' rewards (``steps``: their indices, in order) into
        discounted returns."""
        for key in self.schema:
            if key.changes == "exposed":
                self.episodes[key.name][episode] = np.asarray(final[key.name], key.dtype).copy()
        returns = self.steps["return"]
        running = 0.0
        for i in reversed(steps):
            running = returns[i] + self.gamma * running
            returns[i] = running

    def _arrays(self) -> dict:
        """The steps as arrays, per-hole ``step`` keys left as lists of rows (stacked per batch)."""
        if getattr(self, "_cache", (None, -1))[1] != len(self):
            rows = {key.name for key in self.schema if key.changes == "step" and key.per_hole}
            self._cache = ({k: v if k in rows else np.asarray(v) for k, v in self.steps.items()}, len(self))
        return self._cache[0]

    def batch(self, index: np.ndarray) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Observations (as the network reads them) and targets (``pick``, ``action``, ``return``) of steps."""
        s = self._arrays()
        episode = s["episode"][index]
        visited = np.stack([s["visited"][i] for i in index])
        rows = np.arange(len(index))
        values: dict[str, np.ndarray] = {}
        for key in self.schema:                     # in schema order: is_hole comes before the keys built from it
            name = key.name
            if key.changes == "episode":
                values[name] = np.stack([self.episodes[name][e] for e in episode])
            elif key.changes == "exposed":
                values[name] = np.stack([self.episodes[name][e] for e in episode]) * _per_hole(visited, key)
            elif key.changes == "step":
                values[name] = np.stack([s[name][i] for i in index]) if key.per_hole else s[name][index]
            elif key.changes == "one_hot":
                values[name] = np.zeros((len(index), *key.shape(visited.shape[1])), np.float32)
                values[name][rows, s[name][index]] = 1.0
            else:                                                                   # unvisited
                values[name] = values["is_hole"] * (1 - _per_hole(visited, key))
        obs = {name: torch.as_tensor(value).float() for name, value in values.items()}
        targets = {"pick": torch.as_tensor(s["planner_pick"][index]), "action": torch.as_tensor(s["action"][index]),
                   "return": torch.as_tensor(s["return"][index]).float()}
        return obs, targets


def _per_hole(visited: np.ndarray, key: ObservationKey) -> np.ndarray:
    """``visited`` (B, M) broadcast to a per-hole key's trailing shape."""
    return visited.reshape(*visited.shape, *(1,) * len(key.trailing))


def _device(scorer: HoleScorer) -> torch.device:
    return next(scorer.parameters()).device


@torch.no_grad()
def _network_actions(scorer: HoleScorer, observations: list[dict[str, np.ndarray]]) -> np.ndarray:
    device = _device(scorer)
    batch = {key: torch.as_tensor(np.stack([o[key] for o in observations])).float().to(device)
             for key in observations[0]}
    scores = scorer(batch)
    scores = torch.where(batch["action_mask"] > 0, scores, torch.full_like(scores, -torch.inf))
    return scores.argmax(dim=1).cpu().numpy()


class _StepBar:
    """A tqdm bar of labelled steps whose total grows while the episodes in progress finish (whole episodes)."""

    def __init__(self, total: int, desc: str | None) -> None:
        self.bar = None
        if desc is not None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", leave=False)

    def update(self) -> None:
        if self.bar is not None:
            if self.bar.n >= self.bar.total:
                self.bar.total = self.bar.n + 1
                self.bar.set_postfix_str("finishing the episodes in progress", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def collect(envs: list[gym.Env], scorer: HoleScorer | None, steps: int, *, follow_planner: float = 1.0,
            gamma: float = 0.97, seed: int = 0, demonstrations: Demonstrations | None = None,
            progress: str | None = None) -> Demonstrations:
    """About ``steps`` labelled steps (whole episodes), following the planner with probability ``follow_planner``
    and ``scorer``'s best hole otherwise. ``envs`` carry the planner's signals (:class:`PlannerSignals`); each
    keeps running episodes in turn. ``progress``: the description of a progress bar of the steps (None: no bar)."""
    demonstrations = demonstrations if demonstrations is not None else Demonstrations(gamma)
    rng = np.random.default_rng(seed)
    target = len(demonstrations) + steps
    bar = _StepBar(steps, progress)
    observations, episodes, episode_steps = [], [], []
    for env in envs:
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        observations.append(obs)
        episodes.append(demonstrations._start_episode(obs))
        episode_steps.append([])
    active = list(range(len(envs)))
    while active:
        planner = np.array([int(np.argmax(observations[k]["planner_pick"])) for k in active])
        actions = planner
        if scorer is not None and follow_planner < 1.0:
            learner = _network_actions(scorer, [observations[k] for k in active])
            actions = np.where(rng.random(len(active)) < follow_planner, planner, learner)
        still = []
        for k, action in zip(active, actions):
            new_obs, reward, terminated, truncated, _ = envs[k].step(int(action))
            episode_steps[k].append(len(demonstrations))
            demonstrations._record(episodes[k], observations[k], int(action), float(reward))
            bar.update()
            if terminated or truncated:
                demonstrations._end_episode(episodes[k], new_obs, episode_steps[k])
                if len(demonstrations) >= target:
                    continue
                new_obs, _ = envs[k].reset(seed=int(rng.integers(2**31)))
                episodes[k] = demonstrations._start_episode(new_obs)
                episode_steps[k] = []
            observations[k] = new_obs
            still.append(k)
        active = still
    bar.close()
    return demonstrations


def _soft_targets(obs: dict[str, torch.Tensor], pick: torch.Tensor, valid: torch.Tensor, smoothing: float
                  ) -> torch.Tensor:
    """Per state, ``1 − smoothing`` on the pick and ``smoothing`` spread over the other valid holes of the
    planner's plan (all on the pick where the plan has no other hole)."""
    target = torch.nn.functional.one_hot(pick, valid.shape[1]).float()
    if smoothing <= 0.0:
        return target
    others = (obs["planner_plan"] > 0) & valid & (target == 0)
    count = others.sum(dim=1, keepdim=True)
    spread = torch.where(count > 0, others.float() / count.clamp(min=1), torch.zeros_like(target))
    share = smoothing * (count > 0).float()
    return (1.0 - share) * target + share * spread


def fit(scorer: HoleScorer, demonstrations: Demonstrations, *, loss: Literal["policy", "q"], epochs: float = 2.0,
        batch_size: int = 128, learning_rate: float = 1e-3, margin: float = 0.5, value_weight: float = 0.1,
        smoothing: float = 0.0, seed: int = 0, progress: str | None = None) -> dict[str, float]:
    """Fit ``scorer`` on the demonstrations (module docstring); returns the losses and the agreement with the
    planner over the last epoch's training batches (in-sample, measured before each batch's update).
    ``smoothing`` (policy loss only): the share of the target spread evenly over the other holes of the planner's
    plan, so the policy RL starts from still tries the planner's alternatives (a target on the pick alone makes it
    deterministic: PPO's gradient is then zero). ``progress``: the description of a progress bar of the batches
    (None: no bar)."""
    generator = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(scorer.parameters(), lr=learning_rate)
    scorer.train()
    n = len(demonstrations)
    n_batches = max(1, int(np.ceil(epochs * n / batch_size)))
    last = min(max(1, int(np.ceil(n / batch_size))), n_batches)           # the batches of the last epoch
    device = _device(scorer)
    totals = {"imitation_loss": 0.0, "value_loss": 0.0, "agreement": 0.0}
    batches = range(n_batches)
    if progress is not None:
        from tqdm import tqdm

        batches = tqdm(batches, desc=progress, unit="batch", leave=False)
    for b in batches:
        index = generator.integers(0, n, size=min(batch_size, n))
        obs, targets = demonstrations.batch(index)
        obs = {k: v.to(device) for k, v in obs.items()}
        targets = {k: v.to(device) for k, v in targets.items()}
        scores, value = scorer.scores_and_value(obs)
        valid = obs["action_mask"] > 0
        pick = targets["pick"]
        if loss == "policy":
            logits = torch.where(valid, scores, torch.full_like(scores, -1e9))
            imitation = torch.nn.functional.cross_entropy(logits, _soft_targets(obs, pick, valid, smoothing))
            value_loss = torch.nn.functional.smooth_l1_loss(value.squeeze(1), targets["return"])
        else:
            q = torch.where(valid, scores, torch.full_like(scores, -1e9))
            q_pick = q.gather(1, pick.unsqueeze(1)).squeeze(1)
            bonus = torch.full_like(q, margin).scatter(1, pick.unsqueeze(1), 0.0)
            imitation = ((q + bonus).amax(dim=1) - q_pick).mean()
            followed = (targets["action"] == pick).float()
            value_loss = (torch.nn.functional.smooth_l1_loss(q_pick, targets["return"], reduction="none")
                          * followed).sum() / followed.sum().clamp(min=1.0)
        total = imitation + value_weight * value_loss
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(scorer.parameters(), 10.0)
        optimizer.step()
        if b >= n_batches - last:
            with torch.no_grad():
                agree = (torch.where(valid, scores, torch.full_like(scores, -torch.inf)).argmax(1) == pick)
            totals["imitation_loss"] += float(imitation.detach()) / last
            totals["value_loss"] += float(value_loss.detach()) / last
            totals["agreement"] += float(agree.float().mean()) / last
    scorer.eval()
    return totals


def imitate(scorer: HoleScorer, envs: list[gym.Env], *, loss: Literal["policy", "q"], rounds: int = 3,
            steps_per_round: int = 10_000, follow_planner: float = 0.5, gamma: float = 0.97, seed: int = 0,
            log: Callable[[str], None] = print, progress: bool = False, **fit_kwargs) -> list[dict[str, float]]:
    """DAgger: round 0 follows the planner, later rounds the network (the planner with probability
    ``follow_planner``); ``scorer`` is fitted on all the data after every round. Returns one row per round.
    ``progress``: bars of each round's collection (steps) and fitting (batches)."""
    demonstrations = Demonstrations(gamma)
    history = []
    epochs = fit_kwargs.get("epochs", 2.0)
    for round_ in range(rounds):
        where = f"imitation round {round_}"
        collect(envs, scorer, steps_per_round, follow_planner=1.0 if round_ == 0 else follow_planner,
                gamma=gamma, seed=seed + round_, demonstrations=demonstrations,
                progress=f"{where}: collecting" if progress else None)
        row = {"round": round_, "steps": len(demonstrations),
               **fit(scorer, demonstrations, loss=loss, seed=seed + round_,
                     progress=f"{where}: fitting {epochs:g} epochs on {len(demonstrations):,} steps"
                     if progress else None, **fit_kwargs)}
        history.append(row)
        log(f"[imitation round {round_}] {row['steps']} labelled steps, agreement with the planner "
            f"{row['agreement']:.3f}, {loss} loss {row['imitation_loss']:.3f}")
    return history
