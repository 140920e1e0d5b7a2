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

__all__ = ["Demonstrations", "collect", "fit", "imitate"]

_STATIC = ("predicted_ctf", "predicted_good", "hierarchy", "is_hole", "costs", "threshold")


@dataclass
class Demonstrations:
    """States visited while following a behaviour policy, each labelled with the planner's pick."""

    gamma: float
    static: dict[str, list[np.ndarray]] = field(default_factory=lambda: {k: [] for k in _STATIC})
    measured: list[np.ndarray] = field(default_factory=list)          # per episode: CTF of every hole exposed
    steps: dict[str, list] = field(default_factory=lambda: {k: [] for k in (
        "episode", "visited", "plan", "current", "pick", "time_left", "price", "action", "return")})

    def __len__(self) -> int:
        return len(self.steps["episode"])

    def _start_episode(self, observation: dict[str, np.ndarray]) -> int:
        for key in _STATIC:
            self.static[key].append(np.asarray(observation[key]).copy())
        self.measured.append(np.zeros_like(observation["measured_ctf"]))
        return len(self.measured) - 1

    def _record(self, episode: int, observation: dict[str, np.ndarray], action: int, reward: float) -> None:
        s = self.steps
        s["episode"].append(episode)
        s["visited"].append(np.asarray(observation["visited"], np.int8).copy())
        s["plan"].append(np.asarray(observation["planner_plan"], np.int8).copy())
        s["current"].append(int(np.argmax(observation["current"])))
        s["pick"].append(int(np.argmax(observation["planner_pick"])))
        s["time_left"].append(float(observation["time_left"][0]))
        s["price"].append(float(observation["planner_price"][0]))
        s["action"].append(int(action))
        s["return"].append(float(reward))                      # turned into the return when the episode ends

    def _end_episode(self, episode: int, final: dict[str, np.ndarray], steps: list[int]) -> None:
        """Store what the episode measured and turn its steps' rewards (``steps``: their indices, in order) into
        discounted returns."""
        self.measured[episode] = np.asarray(final["measured_ctf"], np.float32).copy()
        returns = self.steps["return"]
        running = 0.0
        for i in reversed(steps):
            running = returns[i] + self.gamma * running
            returns[i] = running

    def _arrays(self) -> dict:
        if getattr(self, "_cache", (None, -1))[1] != len(self):
            self._cache = ({k: np.asarray(v) if k not in ("visited", "plan") else v
                            for k, v in self.steps.items()}, len(self))
        return self._cache[0]

    def batch(self, index: np.ndarray) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Observations (as the network reads them) and targets (``pick``, ``action``, ``return``) of steps."""
        s = self._arrays()
        episode = s["episode"][index]
        visited = np.stack([s["visited"][i] for i in index])
        m = visited.shape[1]
        static = {k: np.stack([self.static[k][e] for e in episode]) for k in _STATIC}
        current = np.zeros((len(index), m), np.float32)
        current[np.arange(len(index)), s["current"][index]] = 1.0
        pick = np.zeros((len(index), m), np.float32)
        pick[np.arange(len(index)), s["pick"][index]] = 1.0
        measured = np.stack([self.measured[e] for e in episode]) * visited
        obs = {**{k: torch.as_tensor(v).float() for k, v in static.items()},
               "measured_ctf": torch.as_tensor(measured).float(),
               "visited": torch.as_tensor(visited).float(), "current": torch.as_tensor(current),
               "time_left": torch.as_tensor(s["time_left"][index]).float().unsqueeze(1),
               "action_mask": torch.as_tensor(static["is_hole"] * (1 - visited)).float(),
               "planner_pick": torch.as_tensor(pick),
               "planner_plan": torch.as_tensor(np.stack([s["plan"][i] for i in index])).float(),
               "planner_price": torch.as_tensor(s["price"][index]).float().unsqueeze(1)}
        targets = {"pick": torch.as_tensor(s["pick"][index]), "action": torch.as_tensor(s["action"][index]),
                   "return": torch.as_tensor(s["return"][index]).float()}
        return obs, targets


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


def fit(scorer: HoleScorer, demonstrations: Demonstrations, *, loss: Literal["policy", "q"], epochs: float = 2.0,
        batch_size: int = 128, learning_rate: float = 1e-3, margin: float = 0.5, value_weight: float = 0.1,
        seed: int = 0, progress: str | None = None) -> dict[str, float]:
    """Fit ``scorer`` on the demonstrations (module docstring); returns the losses and the agreement with the
    planner over the last epoch's training batches (in-sample, measured before each batch's update).
    ``progress``: the description of a progress bar of the batches (None: no bar)."""
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
            imitation = torch.nn.functional.cross_entropy(logits, pick)
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
