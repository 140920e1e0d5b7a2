"""The per-hole scoring network shared by the learned agents.

One network scores every hole from the compact observation, so its weights do not depend on the number of holes:
a policy trained on a 600-hole grid runs on a 10,000-hole grid. Hierarchical statistics (per patch, square and
tile: unvisited holes, predicted-good holes, measured exposures and how many were good) are computed inside the
network with batched scatter/gather by id, as the papers' features are, but from raw facts in the observation.
The inputs carry each hole's calibrated probability of being good (and its sums per patch, square and tile), the
budget-aware planner's signals (:mod:`cryorl.agents.signals`: its pick, the holes its plan takes, the price of a
hole move) and the greedy-local rule's (each hole's gap to the best prediction in its patch, its patch's
predicted-good holes per minute of travel, whether it is greedy-local's pick), so the network can represent either
rule exactly and learns where to deviate from them.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cryorl.agents.signals import SIGNAL_KEYS
from cryorl.costs import switch_level

__all__ = ["HoleScorer", "hole_features", "N_HOLE_FEATURES", "observation_to_tensors", "guide_picks"]

N_GROUP_FEATURES = 7
N_SIGNAL_FEATURES = 5
N_GREEDY_FEATURES = 4
N_HOLE_FEATURES = 11 + 3 * N_GROUP_FEATURES + N_SIGNAL_FEATURES + N_GREEDY_FEATURES


def observation_to_tensors(observation: dict, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Numpy compact observation (batched or not) → float tensors with a batch dimension."""
    tensors = {}
    for key, value in observation.items():
        tensor = torch.as_tensor(value, device=device).float()
        batched = tensor.dim() >= (3 if key == "hierarchy" else 2)
        tensors[key] = tensor if batched else tensor.unsqueeze(0)
    return tensors


def hole_features(obs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-hole input features (B, M, N_HOLE_FEATURES) from a batch of compact observations."""
    pred, meas = obs["predicted_ctf"], obs["measured_ctf"]
    hole, visited, current = obs["is_hole"], obs["visited"], obs["current"]
    threshold, costs, time_left = obs["threshold"], obs["costs"], obs["time_left"]      # (B,1) (B,4) (B,1)
    ids = obs["hierarchy"].long()                                                       # (B, M, 3)
    batch, m = pred.shape
    missing = [key for key in SIGNAL_KEYS if key not in obs]
    if missing:
        raise KeyError(f"the observation lacks {', '.join(missing)}: the learned agents read the planner's signals "
                       "(wrap the environment in cryorl.agents.signals.PlannerSignals)")
    probability = obs["predicted_good"]

    current_ids = (ids * current.unsqueeze(-1).long()).sum(dim=1, keepdim=True)          # (B, 1, 3)
    same = (ids == current_ids).float()                                                  # tile, square, patch
    level = switch_level(same[..., 2] > 0, same[..., 1] > 0, same[..., 0] > 0, where=torch.where)
    move = costs.gather(1, level)                                                        # minutes (B, M)
    level_onehot = nn.functional.one_hot(level, 4).float()

    margin = ((threshold - pred) / 4.0).clamp(-2.0, 2.0)
    unvisited = hole * (1.0 - visited)
    predicted_good = (pred <= threshold).float() * unvisited
    exposed = hole * visited
    measured_good = (meas <= threshold).float() * exposed

    group_features = []
    stats = torch.stack([unvisited, predicted_good, exposed, measured_good, margin * unvisited,
                         probability * unvisited], dim=-1)                                # (B, M, 6)
    n_good_patch = None
    for level_index in range(3):
        index = ids[..., level_index].unsqueeze(-1).expand(-1, -1, stats.shape[-1])
        sums = torch.zeros_like(stats).scatter_add_(1, index, stats).gather(1, index)    # per-hole group sums
        n_unvisited, n_good, n_exposed, n_measured_good, margin_sum, expected_good = sums.unbind(-1)
        if level_index == 2:
            n_good_patch = n_good
        group_features += [
            torch.log1p(n_good), torch.log1p(n_unvisited), n_good / (n_unvisited + 1.0),
            (n_measured_good + 1.0) / (n_exposed + 2.0), torch.log1p(n_exposed), margin_sum / (n_unvisited + 1.0),
            torch.log1p(expected_good),
        ]
    planner = _greedy_local_signals(margin, predicted_good, unvisited, n_good_patch, move, same[..., 2],
                                    current, ids[..., 2])
    price = obs["planner_price"].expand(-1, m)
    signals = torch.stack([probability, (probability - price).clamp(-1.0, 1.0), price, obs["planner_pick"],
                           obs["planner_plan"]], dim=-1)
    left = time_left.expand(-1, m)
    features = torch.stack([
        margin, (pred <= threshold).float(), visited, move / 10.0, (move / left.clamp(min=1.0)).clamp(max=2.0),
        (move <= left).float(), torch.log1p(left) / 6.0,
    ], dim=-1)
    return torch.cat([features, level_onehot, torch.stack(group_features, dim=-1), signals, planner],
                     dim=-1) * hole.unsqueeze(-1)


def _greedy_local_signals(margin, predicted_good, unvisited, n_good_patch, move, same_patch, current, patch_ids):
    """Per hole: gap to its patch's best unvisited prediction (0 for the best), log of its patch's predicted-good
    holes per minute of travel, that rate relative to the best patch's, and whether greedy-local would pick it."""
    negative = torch.full_like(margin, -1e4)
    candidate = torch.where(unvisited > 0, margin, negative)
    best = negative.scatter_reduce(1, patch_ids, candidate, reduce="amax", include_self=True).gather(1, patch_ids)
    gap = torch.where(unvisited > 0, (margin - best).clamp(min=-4.0), torch.zeros_like(margin))
    rate = n_good_patch / move
    best_rate = torch.where(predicted_good > 0, rate, torch.zeros_like(rate)).amax(dim=1, keepdim=True)
    relative = torch.where(best_rate > 0, rate / best_rate.clamp(min=1e-6), torch.zeros_like(rate))
    stay = ((n_good_patch * current).sum(dim=1, keepdim=True) > 0).float()   # current patch still has good holes
    target_patch = stay * same_patch + (1.0 - stay) * (relative >= 1.0 - 1e-6).float()
    pick = target_patch * predicted_good * (gap >= -1e-6).float()
    return torch.stack([gap, torch.log1p(rate), relative, pick], dim=-1)


class HoleScorer(nn.Module):
    """Scores every hole with one shared MLP over its features and pooled context of the whole grid.

    ``forward`` returns per-hole scores (B, M) — Q-values for DQN, logits for PPO — with invalid holes set to
    ``mask_value`` when ``mask_invalid``; ``value`` returns a state value (B, 1) from the pooled context.
    """

    def __init__(self, hidden: int = 64, mask_invalid: bool = True, mask_value: float = -1e8) -> None:
        super().__init__()
        self.hidden = hidden
        self.mask_invalid = mask_invalid
        self.mask_value = mask_value
        self.encoder = nn.Sequential(nn.Linear(N_HOLE_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                     nn.ReLU())
        self.head = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.value_head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def _encode(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encoder(hole_features(obs))                                  # (B, M, H)
        valid = obs["action_mask"] > 0                                        # (B, M)
        weights = valid.float().unsqueeze(-1)
        count = weights.sum(dim=1).clamp(min=1.0)
        mean = (h * weights).sum(dim=1) / count                               # (B, H)
        peak = torch.where(valid.unsqueeze(-1), h, torch.zeros_like(h)).amax(dim=1)
        return h, torch.cat([mean, peak], dim=-1), valid

    def _scores(self, h: torch.Tensor, context: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # head(cat[h, context]) with the first layer split: the context's part is computed once per grid, not per hole
        first, rest = self.head[0], self.head[1:]
        hidden = self.hidden
        per_grid = nn.functional.linear(context, first.weight[:, hidden:], first.bias).unsqueeze(1)
        scores = rest(nn.functional.linear(h, first.weight[:, :hidden]) + per_grid).squeeze(-1)
        if self.mask_invalid:
            scores = torch.where(valid, scores, torch.full_like(scores, self.mask_value))
        return scores

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._scores(*self._encode(obs))

    def scores_and_value(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, context, valid = self._encode(obs)
        return self._scores(h, context, valid), self.value_head(context)

    def value(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.value_head(self._encode(obs)[1])


def guide_picks(observation: dict) -> np.ndarray:
    """The planner's hole for each observation of a batch (from its ``planner_pick`` signal)."""
    pick = np.asarray(observation["planner_pick"]) > 0
    valid = np.asarray(observation["action_mask"]) > 0
    choice = np.where(pick.any(axis=-1, keepdims=True), pick & valid, valid)
    return np.argmax(np.random.random(choice.shape) * choice + choice, axis=-1)
