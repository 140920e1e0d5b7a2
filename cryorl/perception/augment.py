"""Augmentations of hole crops: the standard (weak) one and policies of EM-sensible operations (strong).

Crops reach the model normalised per image (zero mean, unit variance, :meth:`HoleQualityPredictor.preprocess`).
The **standard** augmentation is what every training run uses: a flip, a 90° rotation, ±10 % contrast and up to
0.1 σ of Gaussian noise. Its random numbers are drawn for a whole *global* batch and each process (or
accumulation micro-batch) takes its rows, so that training on one process or many sees the same augmented crops
(:mod:`cryorl.perception.training`).

A **policy** is a set of operations with magnitudes in [0, 1], applied RandAugment-style: each crop gets
``ops_per_crop`` operations drawn from the policy, each at a random strength up to its magnitude, and is then
normalised again. The operations are what changes between two exposures of the same hole at low magnification,
not what changes its quality:

=========  ==================================================================================================
op         what it imitates (strength 1)
=========  ==================================================================================================
noise      a lower dose: Gaussian shot noise of 0.6 σ
blur       defocus or stage drift: a Gaussian blur of 2 px
shift      hole-centring error of the targeting: a translation of up to 8 % of the crop
rotate     the grid's rotation: up to 30° (on top of the 90° turns)
ramp       uneven illumination across the crop: a linear ramp of 1 σ from edge to edge
cutout     a dust speck or a crystal beside the hole: a square of 25 % of the crop set to the mean
gamma      the detector's and the ice's nonlinearity: gamma between 0.6 and 1.6 on the min-max scaled crop
=========  ==================================================================================================

FixMatch (:mod:`cryorl.perception.semi`) uses a policy as its strong augmentation; ``search_policy`` there
chooses the operations and magnitudes on held-out labelled holes instead of taking :data:`DEFAULT_POLICY`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["OPERATIONS", "AugmentPolicy", "DEFAULT_POLICY", "draw_standard", "apply_standard", "Rows"]

OPERATIONS = ("noise", "blur", "shift", "rotate", "ramp", "cutout", "gamma")


@dataclass(frozen=True)
class Rows:
    """Which rows of a global batch this process computes: ``start::step`` (process ``rank`` of ``world``,
    micro-batch ``a`` of ``accumulate``: start = a·world + rank, step = world·accumulate)."""

    start: int = 0
    step: int = 1

    def take(self, values: torch.Tensor) -> torch.Tensor:
        return values[self.start::self.step]


def _per_sample(n: int, ndim: int) -> tuple[int, ...]:
    return (n,) + (1,) * (ndim - 1)


def draw_standard(n: int, shape: tuple[int, ...], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The standard augmentation's random numbers for ``n`` crops of ``shape`` (one crop's shape)."""
    per_sample = _per_sample(n, len(shape) + 1)
    return {"flip": torch.rand(per_sample, generator=generator) < 0.5,
            "turns": torch.randint(0, 4, (1,), generator=generator),
            "contrast": 1.0 + 0.1 * (2 * torch.rand(per_sample, generator=generator) - 1),
            "noise": 0.1 * torch.rand(per_sample, generator=generator) * torch.randn((n, *shape),
                                                                                     generator=generator)}


def apply_standard(x: torch.Tensor, draws: dict[str, torch.Tensor], rows: Rows = Rows()) -> torch.Tensor:
    """Flip, turn, contrast and noise ``x`` (this process's rows of the global batch ``draws`` was made for)."""
    x = torch.where(rows.take(draws["flip"]), x.flip(-1), x)
    x = torch.rot90(x, int(draws["turns"]), dims=(-2, -1))
    return x * rows.take(draws["contrast"]) + rows.take(draws["noise"])


def _normalise(x: torch.Tensor) -> torch.Tensor:
    axes = tuple(range(1, x.ndim))
    return (x - x.mean(dim=axes, keepdim=True)) / (x.std(dim=axes, keepdim=True) + 1e-6)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-t ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    flat = x.reshape(-1, 1, *x.shape[-2:])
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return flat.reshape(x.shape)


def _affine(x: torch.Tensor, angle: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each crop by ``angle`` (radians, (n,)) and translate by ``shift`` ((n, 2), fractions of the
    half-width), border pixels repeated."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    flat = x.reshape(-1, 1, *x.shape[-2:])
    repeat = flat.shape[0] // len(theta)
    grid = F.affine_grid(theta.repeat_interleave(repeat, 0), list(flat.shape), align_corners=False)
    return F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False).reshape(x.shape)


@dataclass(frozen=True)
class AugmentPolicy:
    """Operations with magnitudes in [0, 1] (module docstring); ``ops_per_crop`` of them per crop."""

    magnitudes: tuple[tuple[str, float], ...]
    ops_per_crop: int = 2

    def __post_init__(self) -> None:
        for name, magnitude in self.magnitudes:
            if name not in OPERATIONS:
                raise ValueError(f"unknown augmentation {name!r}; choose from {', '.join(OPERATIONS)}")
            if not 0.0 < magnitude <= 1.0:
                raise ValueError(f"augmentation {name!r} needs a magnitude in (0, 1], got {magnitude!r}")
        if not self.magnitudes:
            raise ValueError("an augmentation policy needs at least one operation")
        if self.ops_per_crop < 1:
            raise ValueError(f"ops_per_crop must be at least 1, got {self.ops_per_crop}")

    @classmethod
    def from_dict(cls, data: dict) -> AugmentPolicy:
        try:
            return cls(tuple((str(k), float(v)) for k, v in data["magnitudes"].items()), int(data["ops_per_crop"]))
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise ValueError(f"not an augmentation policy ({{'magnitudes': {{op: m}}, 'ops_per_crop': n}}): "
                             f"{error}") from None

    def to_dict(self) -> dict:
        return {"magnitudes": dict(self.magnitudes), "ops_per_crop": self.ops_per_crop}

    def describe(self) -> str:
        return json.dumps(self.to_dict()["magnitudes"])

    def draw(self, n: int, size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The random numbers for ``n`` crops of ``size`` × ``size`` px: which operations each crop gets, their
        strengths and their parameters."""
        k = len(self.magnitudes)
        chosen = torch.randint(0, k, (n, self.ops_per_crop), generator=generator)
        uses = torch.stack([(chosen == j).any(1) for j in range(k)], 1)                   # (n, k)
        strength = torch.rand((n, k), generator=generator) * torch.tensor([m for _, m in self.magnitudes])
        return {"uses": uses, "strength": strength, "noise": torch.randn((n, 1, size, size), generator=generator),
                "direction": torch.rand((n, 4), generator=generator) * 2 - 1}

    def apply(self, x: torch.Tensor, draws: dict[str, torch.Tensor], rows: Rows = Rows()) -> torch.Tensor:
        """Apply the policy to normalised images ``x`` ((n, 1, S, S), this process's ``rows`` of the draws),
        then normalise each again."""
        uses, strength, noise, direction = (rows.take(draws[key]) for key in ("uses", "strength", "noise",
                                                                             "direction"))
        n, size = x.shape[0], x.shape[-1]
        for j, (name, _) in enumerate(self.magnitudes):
            on = uses[:, j]
            if not on.any():
                continue
            s = torch.where(on, strength[:, j], torch.zeros(()))
            w = s.view(-1, 1, 1, 1)
            if name == "noise":
                x = x + 0.6 * w * noise
            elif name == "blur":
                x = x + torch.clamp(w * 2, max=1.0) * (_gaussian_blur(x, max(2.0 * float(s.max()), 0.3)) - x)
            elif name == "shift":
                x = _affine(x, torch.zeros(n), 0.16 * s[:, None] * direction[:, :2])
            elif name == "rotate":
                x = _affine(x, torch.deg2rad(30.0 * s * direction[:, 2]), torch.zeros(n, 2))
            elif name == "ramp":
                ramp = torch.linspace(-0.5, 0.5, size)
                field = direction[:, 0].view(-1, 1, 1, 1) * ramp.view(1, 1, 1, -1) \
                    + direction[:, 1].view(-1, 1, 1, 1) * ramp.view(1, 1, -1, 1)
                x = x + w * field
            elif name == "cutout":
                half = 0.125 * size * s.view(-1, 1, 1, 1)
                centre = (direction[:, 2:4] * 0.5 + 0.5) * (size - 1)
                grid = torch.arange(size, dtype=x.dtype)
                inside = ((grid.view(1, 1, 1, -1) - centre[:, 0].view(-1, 1, 1, 1)).abs() < half) & \
                    ((grid.view(1, 1, -1, 1) - centre[:, 1].view(-1, 1, 1, 1)).abs() < half)
                x = torch.where(inside, x.mean(dim=(1, 2, 3), keepdim=True), x)
            elif name == "gamma":
                low = x.amin(dim=(1, 2, 3), keepdim=True)
                scaled = (x - low) / (x.amax(dim=(1, 2, 3), keepdim=True) - low + 1e-6)
                gamma = torch.exp(w * direction[:, 3].view(-1, 1, 1, 1) * 0.5)     # 0.6 … 1.65
                x = torch.where(on.view(-1, 1, 1, 1), scaled ** gamma, x)
        return _normalise(x)


DEFAULT_POLICY = AugmentPolicy(tuple((name, 0.5) for name in OPERATIONS))
