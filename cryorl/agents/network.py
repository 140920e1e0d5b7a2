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

The input columns are declared as named feature blocks (:data:`HOLE_FEATURE_BLOCKS`); their count
(:data:`N_HOLE_FEATURES`) and names (:data:`HOLE_FEATURE_NAMES`, recorded by a saved policy) follow from them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cryorl.agents.signals import SIGNAL_KEYS
from cryorl.costs import SWITCH_LEVELS, switch_level
from cryorl.observation import LEARNER_SCHEMA, ObservationKey, batch_rank

__all__ = ["HoleScorer", "hole_features", "N_HOLE_FEATURES", "HOLE_FEATURE_NAMES", "HOLE_FEATURE_BLOCKS",
           "FeatureBlock", "HoleInputs", "feature_names", "observation_to_tensors", "guide_picks"]

_LEVELS = ("tile", "square", "patch")
"""The columns of ``hierarchy``, in order."""
_GROUP_COLUMNS = ("log_predicted_good", "log_unvisited", "predicted_good_fraction", "measured_good_rate",
                  "log_exposed", "mean_margin", "log_expected_good")
"""The statistics of a hole's tile, square and patch (:class:`HoleInputs`), in order."""


def observation_to_tensors(observation: dict, device: str | torch.device = "cpu",
                           schema: tuple[ObservationKey, ...] = LEARNER_SCHEMA) -> dict[str, torch.Tensor]:
    """Numpy observation (batched or not) → float tensors with a batch dimension; a key's unbatched rank is its
    ``schema`` shape's (:func:`cryorl.observation.batch_rank`)."""
    ranks = batch_rank(schema)
    tensors = {}
    for key, value in observation.items():
        if key not in ranks:
            raise KeyError(f"observation key {key!r} is not declared in the observation schema "
                           "(cryorl/observation.py)")
        tensor = torch.as_tensor(value, device=device).float()
        tensors[key] = tensor if tensor.dim() > ranks[key] else tensor.unsqueeze(0)
    return tensors


class HoleInputs:
    """What the feature blocks share, computed once per batch from a compact observation with the planner's
    signals: shapes (B, M) unless noted."""

    def __init__(self, obs: dict[str, torch.Tensor]) -> None:
        self.obs = obs
        pred, meas = obs["predicted_ctf"], obs["measured_ctf"]
        self.hole, self.visited, self.current = obs["is_hole"], obs["visited"], obs["current"]
        threshold, costs = obs["threshold"], obs["costs"]                               # (B, 1), (B, 4)
        self.probability = obs["predicted_good"]
        ids = obs["hierarchy"].long()                                                   # (B, M, 3)
        batch, m = pred.shape
        current_ids = (ids * self.current.unsqueeze(-1).long()).sum(dim=1, keepdim=True)  # (B, 1, 3)
        self.same = same = (ids == current_ids).float()                                 # tile, square, patch
        self.level = switch_level(same[..., 2] > 0, same[..., 1] > 0, same[..., 0] > 0, where=torch.where)
        self.move = costs.gather(1, self.level)                                         # minutes
        self.left = obs["time_left"].expand(-1, m)
        self.price = obs["planner_price"].expand(-1, m)
        self.below = (pred <= threshold).float()
        self.margin = ((threshold - pred) / 4.0).clamp(-2.0, 2.0)
        self.unvisited = self.hole * (1.0 - self.visited)
        self.predicted_good = self.below * self.unvisited
        exposed = self.hole * self.visited
        measured_good = (meas <= threshold).float() * exposed
        stats = torch.stack([self.unvisited, self.predicted_good, exposed, measured_good,
                             self.margin * self.unvisited, self.probability * self.unvisited], dim=-1)  # (B, M, 6)
        # The group table: one row per (grid, level, id), sized by the largest id of each level (ids are below M;
        # a grid's groups are usually far fewer than its holes). Each hole adds its stats to its tile's, square's
        # and patch's rows in one index_add; the group columns are computed on the table and gathered per hole.
        # On an accelerator every id below M gets a row: reading the largest id would wait for the device.
        sizes = (ids.amax(dim=(0, 1)) + 1).tolist() if ids.device.type == "cpu" else [m] * len(_LEVELS)
        groups = sum(sizes)
        offsets = torch.tensor([sum(sizes[:level]) for level in range(len(_LEVELS))], device=ids.device)
        grid_offsets = torch.arange(batch, device=ids.device).view(batch, 1, 1) * groups
        self.group_index = index = ids + offsets + grid_offsets                        # (B, M, 3): table rows
        flat = index.reshape(-1)
        self.group_table = stats.new_zeros(batch * groups, stats.shape[-1]).index_add_(
            0, flat, stats.unsqueeze(2).expand(-1, -1, len(_LEVELS), -1).reshape(-1, stats.shape[-1]))
        n_unvisited, n_good, n_exposed, n_measured_good, margin_sum, expected_good = self.group_table.unbind(-1)
        columns = torch.stack([torch.log1p(n_good), torch.log1p(n_unvisited), n_good / (n_unvisited + 1.0),
                               (n_measured_good + 1.0) / (n_exposed + 2.0), torch.log1p(n_exposed),
                               margin_sum / (n_unvisited + 1.0), torch.log1p(expected_good)], dim=-1)
        self.group_columns = columns.index_select(0, flat).view(batch, m, len(_LEVELS), len(_GROUP_COLUMNS))
        self.n_good_patch = n_good.index_select(0, index[..., 2].reshape(-1)).view(batch, m)


@dataclass(frozen=True)
class FeatureBlock:
    """Input columns computed together: their names and ``compute(inputs) ->`` one (B, M) tensor per column, or one
    (B, M, columns) tensor."""

    name: str
    columns: tuple[str, ...]
    compute: Callable[[HoleInputs], list[torch.Tensor] | torch.Tensor]


def _hole_columns(x: HoleInputs) -> list[torch.Tensor]:
    return [x.margin, x.below, x.visited, x.move / 10.0, (x.move / x.left.clamp(min=1.0)).clamp(max=2.0),
            (x.move <= x.left).float(), torch.log1p(x.left) / 6.0]


def _switch_columns(x: HoleInputs) -> list[torch.Tensor]:
    return list(nn.functional.one_hot(x.level, len(SWITCH_LEVELS)).float().unbind(-1))


def _group_columns(level_index: int) -> Callable[[HoleInputs], torch.Tensor]:
    def compute(x: HoleInputs) -> torch.Tensor:
        return x.group_columns[:, :, level_index]
    return compute


def _signal_columns(x: HoleInputs) -> list[torch.Tensor]:
    return [x.probability, (x.probability - x.price).clamp(-1.0, 1.0), x.price, x.obs["planner_pick"],
            x.obs["planner_plan"]]


def _greedy_local_columns(x: HoleInputs) -> list[torch.Tensor]:
    """Per hole: gap to its patch's best unvisited prediction (0 for the best), log of its patch's predicted-good
    holes per minute of travel, that rate relative to the best patch's, and whether greedy-local would pick it."""
    margin, unvisited, n_good_patch = x.margin, x.unvisited, x.n_good_patch
    patch = x.group_index[..., 2].reshape(-1)
    negative = torch.full_like(margin, -1e4)
    candidate = torch.where(unvisited > 0, margin, negative)
    best = margin.new_full((x.group_table.shape[0],), -1e4).scatter_reduce(
        0, patch, candidate.reshape(-1), reduce="amax", include_self=True).index_select(0, patch).view_as(margin)
    gap = torch.where(unvisited > 0, (margin - best).clamp(min=-4.0), torch.zeros_like(margin))
    rate = n_good_patch / x.move
    best_rate = torch.where(x.predicted_good > 0, rate, torch.zeros_like(rate)).amax(dim=1, keepdim=True)
    relative = torch.where(best_rate > 0, rate / best_rate.clamp(min=1e-6), torch.zeros_like(rate))
    stay = ((n_good_patch * x.current).sum(dim=1, keepdim=True) > 0).float()   # current patch still has good holes
    target_patch = stay * x.same[..., 2] + (1.0 - stay) * (relative >= 1.0 - 1e-6).float()
    pick = target_patch * x.predicted_good * (gap >= -1e-6).float()
    return [gap, torch.log1p(rate), relative, pick]


HOLE_FEATURE_BLOCKS: tuple[FeatureBlock, ...] = (
    FeatureBlock("hole", ("ctf_margin", "predicted_below_threshold", "visited", "move_minutes_over_10",
                          "move_over_time_left", "move_fits_time_left", "log_time_left_over_6"), _hole_columns),
    FeatureBlock("switch level", tuple(f"switch_{level}" for level in SWITCH_LEVELS), _switch_columns),
    *(FeatureBlock(f"{level} statistics", tuple(f"{level}_{column}" for column in _GROUP_COLUMNS),
                   _group_columns(level_index)) for level_index, level in enumerate(_LEVELS)),
    FeatureBlock("planner signals", ("predicted_good", "predicted_good_minus_price", "planner_price",
                                     "planner_pick", "planner_plan"), _signal_columns),
    FeatureBlock("greedy-local signals", ("greedy_gap", "greedy_log_rate", "greedy_relative_rate", "greedy_pick"),
                 _greedy_local_columns),
)
"""The per-hole input columns of :class:`HoleScorer`, in order; a new column is a new entry (or column) here."""


def feature_names(blocks: tuple[FeatureBlock, ...]) -> tuple[str, ...]:
    """The input column names of ``blocks``, in order."""
    return tuple(column for block in blocks for column in block.columns)


HOLE_FEATURE_NAMES = feature_names(HOLE_FEATURE_BLOCKS)
N_HOLE_FEATURES = len(HOLE_FEATURE_NAMES)


def hole_features(obs: dict[str, torch.Tensor],
                  blocks: tuple[FeatureBlock, ...] = HOLE_FEATURE_BLOCKS) -> torch.Tensor:
    """Per-hole input features (B, M, columns of ``blocks``) from a batch of compact observations with the
    planner's signals; padded rows are 0."""
    missing = [key for key in SIGNAL_KEYS if key not in obs]
    if missing:
        raise KeyError(f"the observation lacks {', '.join(missing)}: the learned agents read the planner's signals "
                       "(wrap the environment in cryorl.agents.signals.PlannerSignals)")
    inputs = HoleInputs(obs)
    parts = []
    for block in blocks:
        values = block.compute(inputs)
        part = values if isinstance(values, torch.Tensor) else torch.stack(values, dim=-1)
        if part.shape[-1] != len(block.columns):
            raise ValueError(f"feature block {block.name!r} computed {part.shape[-1]} columns but names "
                             f"{len(block.columns)}")
        parts.append(part)
    return torch.cat(parts, dim=-1) * inputs.hole.unsqueeze(-1)


class HoleScorer(nn.Module):
    """Scores every hole with one shared MLP over its features and pooled context of the whole grid.

    ``forward`` returns per-hole scores (B, M) — Q-values for DQN, logits for PPO — with invalid holes set to
    ``mask_value`` when ``mask_invalid``; ``value`` returns a state value (B, 1) from the pooled context.
    """

    def __init__(self, hidden: int = 64, mask_invalid: bool = True, mask_value: float = -1e8,
                 blocks: tuple[FeatureBlock, ...] = HOLE_FEATURE_BLOCKS) -> None:
        super().__init__()
        self.hidden = hidden
        self.mask_invalid = mask_invalid
        self.mask_value = mask_value
        self.blocks = tuple(blocks)
        self.feature_names = feature_names(self.blocks)
        # ReLUs in place: each follows a Linear, whose backward does not need its output (one (B, M, H) buffer less)
        self.encoder = nn.Sequential(nn.Linear(len(self.feature_names), hidden), nn.ReLU(inplace=True),
                                     nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))
        self.value_head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def _encode(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encoder(hole_features(obs, self.blocks))                                  # (B, M, H)
        valid = obs["action_mask"] > 0                                        # (B, M)
        weights = valid.float().unsqueeze(-1)
        count = weights.sum(dim=1).clamp(min=1.0)
        masked = h * weights                      # h ≥ 0 (a ReLU's output): 0 for an invalid hole leaves the peak
        return h, torch.cat([masked.sum(dim=1) / count, masked.amax(dim=1)], dim=-1), valid   # mean, peak (B, 2H)

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
