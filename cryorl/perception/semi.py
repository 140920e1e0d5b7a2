"""Semi-supervised training from mostly unmeasured holes: FixMatch with a learned augmentation policy.

In a real session only exposed holes get a CTFMaxRes; the rest of the grid is unlabelled. FixMatch (Sohn et al.
2020) uses them: for each unlabelled crop the model's prediction on a *weakly* augmented view (the standard
flips, turns, contrast and noise), where it is confident (the largest CTF-bin probability ≥ ``confidence``),
becomes the target of its prediction on a *strongly* augmented view (the weak view plus an
:class:`~cryorl.perception.augment.AugmentPolicy`). CTF bins are ordered and neighbours share probability, so
the target is the weak view's distribution sharpened by ``temperature`` (as in MixMatch/UDA) rather than its
argmax; ``temperature=0`` gives FixMatch's hard pseudo-labels. Batch-norm running statistics come from the
labelled and weakly augmented crops, not from the strong views. The loss is the supervised loss on the labelled
crops plus ``weight`` × the cross-entropy on the confident unlabelled ones, ``ratio`` unlabelled crops per
labelled crop in each batch. FixMatch needs class probabilities, so the predictor's target is the CTF bins
(``target="bins"``).

The strong augmentation can be learned instead of hand-designed: :func:`search_policy` trains short FixMatch
runs with candidate policies (random subsets of the EM operations at random magnitudes, plus the default) and
keeps the one with the lowest MAE on held-out *labelled* holes, by successive halving — half the candidates
survive each round and train twice as long in the next (a validation-driven search, after Li et al.'s
Hyperband and the population searches of AutoAugment's successors).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cryorl.perception.augment import DEFAULT_POLICY, OPERATIONS, AugmentPolicy, Rows, apply_standard, draw_standard
from cryorl.perception.training import frozen_running_stats

if TYPE_CHECKING:
    from cryorl.perception.predictor import HoleQualityPredictor

__all__ = ["FixMatch", "search_policy", "random_policy"]


@dataclass(frozen=True)
class FixMatch:
    """FixMatch's settings (module docstring)."""

    confidence: float = 0.3
    weight: float = 1.0
    ratio: int = 3
    policy: AugmentPolicy = field(default=DEFAULT_POLICY)
    temperature: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"the confidence threshold is a probability in (0, 1), got {self.confidence!r}")
        if not 0.0 <= self.temperature <= 1.0:
            raise ValueError(f"the sharpening temperature is in [0, 1] (0: hard pseudo-labels), got "
                             f"{self.temperature!r}")
        if self.weight < 0 or self.ratio < 1:
            raise ValueError(f"FixMatch needs weight ≥ 0 and ratio ≥ 1, got {self.weight!r}, {self.ratio!r}")

    def describe(self) -> str:
        return (f"FixMatch (confidence {self.confidence:g}, temperature {self.temperature:g}, weight "
                f"{self.weight:g}, ratio {self.ratio}, "
                f"strong augmentation {self.policy.describe()} × {self.policy.ops_per_crop})")

    def check(self, predictor: HoleQualityPredictor, unlabelled: int) -> None:
        if predictor.config["target"] != "bins":
            raise ValueError("FixMatch needs class probabilities: train the predictor with target='bins' "
                             "(cryorl perception train --target bins)")
        if predictor.movies:
            raise ValueError("semi-supervised training takes hole images, not movies (a temporal backbone)")
        if unlabelled < 1:
            raise ValueError("semi-supervised training needs at least one unlabelled crop")

    def draw(self, n_global: int, unlabelled: int, shape: tuple[int, ...], generator: torch.Generator) -> dict:
        """A global batch's unlabelled crops (drawn with replacement) and their weak and strong augmentations."""
        n = self.ratio * n_global
        return {"index": torch.randint(0, unlabelled, (n,), generator=generator),
                "weak": draw_standard(n, shape, generator),
                "strong": self.policy.draw(n, shape[-1], generator)}

    def loss(self, net: torch.nn.Module, predictor: HoleQualityPredictor, x: torch.Tensor, y: torch.Tensor,
             unlabelled: torch.Tensor, draws: dict, rows: Rows, device: torch.device
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Supervised loss on ``x`` plus the weighted consistency loss on this process's unlabelled rows."""
        xu = unlabelled[rows.take(draws["index"])]
        weak = apply_standard(xu, draws["weak"], rows)
        strong = self.policy.apply(weak, draws["strong"], rows)
        labelled, weak_logits = net(torch.cat([x, weak]).to(device)).split([len(x), len(xu)])
        with frozen_running_stats(net, True):                        # statistics of unaltered crops only
            strong_logits = net(strong.to(device))
        supervised = predictor.loss(labelled, y.to(device))
        probabilities = torch.softmax(weak_logits.detach(), dim=1)
        confidence, pseudo = probabilities.max(dim=1)
        if self.temperature > 0:                                      # sharpened, keeps the bins' order
            pseudo = torch.softmax(torch.log(probabilities + 1e-8) / self.temperature, dim=1)
        confident = (confidence >= self.confidence).float()
        consistency = (F.cross_entropy(strong_logits, pseudo, reduction="none") * confident).mean()
        return supervised + self.weight * consistency, {"unlabelled_loss": consistency.item(),
                                                        "confident_fraction": confident.mean().item()}


def random_policy(rng: np.random.Generator, ops_per_crop: int = 2) -> AugmentPolicy:
    """A policy of a random non-empty subset of the operations, each at a magnitude of 0.25, 0.5, 0.75 or 1."""
    chosen = rng.random(len(OPERATIONS)) < 0.5
    if not chosen.any():
        chosen[rng.integers(len(OPERATIONS))] = True
    return AugmentPolicy(tuple((name, float(rng.choice([0.25, 0.5, 0.75, 1.0])))
                               for name, keep in zip(OPERATIONS, chosen) if keep), ops_per_crop)


def search_policy(make_predictor: Callable[[], HoleQualityPredictor], crops: np.ndarray, ctf: np.ndarray,
                  unlabelled: np.ndarray, validation: tuple[np.ndarray, np.ndarray], *, candidates: int = 8,
                  epochs: int = 1, method: FixMatch = FixMatch(), seed: int = 0, progress: bool = False,
                  **fit_options) -> tuple[AugmentPolicy, pd.DataFrame]:
    """The strong-augmentation policy with the lowest validation MAE after FixMatch training (module
    docstring): ``candidates`` policies (the default first), successive halving from ``epochs`` epochs.
    Returns the winner and one row per trial (round, policy, epochs, validation MAE)."""
    if candidates < 2:
        raise ValueError(f"a policy search needs at least 2 candidates, got {candidates}")
    rng = np.random.default_rng(seed)
    pool = [method.policy] + [random_policy(rng, method.policy.ops_per_crop) for _ in range(candidates - 1)]
    trials, round_, budget = [], 0, epochs
    while True:
        scores = []
        for policy in pool:
            predictor = make_predictor()
            trial = dataclasses.replace(method, policy=policy)
            predictor.fit(crops, ctf, epochs=budget, seed=seed, progress=progress, semi=trial,
                          unlabelled=unlabelled, **fit_options)
            mae = predictor.evaluate(*validation)["mae"]
            scores.append(mae)
            trials.append({"round": round_ + 1, "epochs": budget, "policy": policy.describe(), "val_mae": mae})
        ranked = [pool[i] for i in np.argsort(scores, kind="stable")]
        if len(pool) <= 2:
            return ranked[0], pd.DataFrame(trials)
        pool, round_, budget = ranked[:len(pool) // 2], round_ + 1, budget * 2
