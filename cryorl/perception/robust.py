"""Adversarial robustness of hole-quality models: PGD and FGSM attacks on the input, and min-max training.

An :class:`Attack` perturbs a batch of (preprocessed, per-image normalised) crops within an ℓ∞ or ℓ2 ball of
radius ``epsilon`` to *increase* the model's training loss against the true CTFMaxRes — projected gradient ascent
from a random start (PGD, Madry et al. 2018) for ``steps`` steps of ``step_size``, or one signed step of
``epsilon`` (FGSM, the cheap case: ``Attack.fgsm(eps)``). Adversarial training
(``HoleQualityPredictor.fit(adversarial=attack)``, ``cryorl perception train --adversarial pgd``) minimises the
loss on such perturbed batches: the inner maximisation of the min-max problem. ``cryorl perception attack``
measures a saved model's MAE and accuracy at the threshold on clean and attacked crops. Works with any registered
backbone, images or movies.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Attack", "perturb"]


@dataclass(frozen=True)
class Attack:
    """A perturbation budget and how to spend it (module docstring). Inputs are normalised per image (unit
    variance), so ``epsilon`` is in units of an image's standard deviation."""

    epsilon: float = 0.05
    steps: int = 5
    step_size: float | None = None          # default 2.5·ε/steps (Madry et al.)
    norm: str = "linf"
    random_start: bool = True

    def __post_init__(self) -> None:
        if self.norm not in ("linf", "l2"):
            raise ValueError(f"attack norm must be 'linf' or 'l2', not {self.norm!r}")
        if not (self.epsilon > 0 and self.steps >= 1):
            raise ValueError(f"an attack needs epsilon > 0 and steps ≥ 1, got {self.epsilon!r}, {self.steps!r}")

    @classmethod
    def fgsm(cls, epsilon: float, norm: str = "linf") -> Attack:
        """One step of size ε from the clean input."""
        return cls(epsilon=epsilon, steps=1, step_size=epsilon, norm=norm, random_start=False)

    @property
    def step(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.epsilon / self.steps

    def draw_start(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor | None:
        """The random start of PGD for inputs of ``shape`` (uniform in the ℓ∞ cube of ε, projected onto the
        ball), or None for an attack from the clean input."""
        if not self.random_start:
            return None
        return _project((torch.rand(shape, generator=generator) * 2 - 1) * self.epsilon, self)

    def describe(self) -> str:
        kind = "FGSM" if self.steps == 1 and not self.random_start else f"PGD-{self.steps}"
        return f"{kind} {self.norm} ε={self.epsilon:g}"


def _per_sample_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *([1] * (x.ndim - 1)))


def _project(delta: torch.Tensor, attack: Attack) -> torch.Tensor:
    if attack.norm == "linf":
        return delta.clamp(-attack.epsilon, attack.epsilon)
    return delta * (attack.epsilon / _per_sample_norm(delta)).clamp(max=1.0)


def perturb(model: torch.nn.Module, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
            y: torch.Tensor, attack: Attack, generator: torch.Generator | None = None,
            start: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` plus a perturbation within the attack's ball that increases ``loss(model(x + δ), y)``, from
    ``start`` (default: :meth:`Attack.draw_start` with ``generator``). The model is put in eval mode while
    attacking (batch statistics untouched) and restored after; no gradient reaches its weights."""
    was_training = model.training
    model.eval()
    if start is None:
        start = attack.draw_start(tuple(x.shape), generator)
    delta = torch.zeros_like(x) if start is None else start.to(x.device)
    for _ in range(attack.steps):
        delta.requires_grad_(True)
        grad, = torch.autograd.grad(loss(model(x + delta), y), delta)
        with torch.no_grad():
            if attack.norm == "linf":
                delta = delta + attack.step * grad.sign()
            else:
                delta = delta + attack.step * grad / _per_sample_norm(grad)
            delta = _project(delta, attack)
    model.train(was_training)
    return (x + delta).detach()
