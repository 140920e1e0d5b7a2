"""The training loop of hole-quality predictors: one process or many, standard, adversarial or semi-supervised.

One loop serves every way of training (``HoleQualityPredictor.fit`` and ``cryorl perception train`` call it):

- **Global batches.** ``Schedule.batch_size`` is the global batch. Each epoch draws one permutation of the crops
  from a generator seeded with ``seed``; a ``DistributedSampler`` gives process ``rank`` of ``world`` every
  ``world``-th crop of it, and with ``accumulate`` micro-batches per process each micro-batch takes every
  ``accumulate``-th of those. All random numbers of a step (augmentation, the attack's random start, the
  unlabelled crops) are drawn for the global batch on every process and each process takes its rows
  (:class:`~cryorl.perception.augment.Rows`). So 2 processes of 32 crops, 1 process accumulating 2 × 32 and —
  for models without batch normalisation — 1 process of 64 compute the same gradient. Batch-norm statistics
  are per micro-batch; the running ones are updated by the first micro-batch of rank 0 only and shared with the
  other processes at the start of every step, so every process attacks and validates with the same ones.
- **Large batches.** ``lr_scaling`` scales the learning rate with the global batch, linearly (Goyal et al.
  2017) or by its square root, relative to ``base_batch``; the one-cycle schedule warms up over the first
  ``warmup`` fraction of the steps and then anneals (cosine).
- **Checkpoints.** With ``checkpoint``, rank 0 writes the whole state (weights, optimizer, schedule, random
  generators, history, best weights so far) atomically after every epoch; ``resume=True`` continues from it and
  gives the same weights as a run that was never interrupted.
- **Validation.** Rank 0 evaluates after every epoch and keeps the weights with the lowest validation MAE.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch.utils.data.distributed import DistributedSampler

from cryorl.fileio import NotWeightsError, atomic_path, load_weights
from cryorl.perception import distributed
from cryorl.perception.augment import Rows, apply_standard, draw_standard
from cryorl.perception.robust import Attack, perturb


class TrainablePredictor(Protocol):
    """What the loop needs of a predictor (:class:`cryorl.perception.predictor.HoleQualityPredictor` has it; this
    module does not import it, so that the predictor may import the loop)."""
    model: torch.nn.Module
    config: dict

    def preprocess(self, crops: np.ndarray) -> torch.Tensor: ...
    def targets(self, ctf: np.ndarray) -> np.ndarray: ...
    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...
    def evaluate(self, crops: np.ndarray, ctf: np.ndarray, threshold: float = 6.0) -> dict[str, float]: ...

__all__ = ["Schedule", "train", "CheckpointError", "LR_SCALINGS", "frozen_running_stats"]

LR_SCALINGS = ("none", "linear", "sqrt")
CHECKPOINT_FORMAT = "cryorl-perception-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or of a different training run."""


@dataclass(frozen=True)
class Schedule:
    """How long and how fast to train (module docstring)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    lr_scaling: str = "none"
    base_batch: int = 64
    warmup: float = 0.15
    accumulate: int = 1

    def __post_init__(self) -> None:
        if self.lr_scaling not in LR_SCALINGS:
            raise ValueError(f"lr_scaling must be one of {', '.join(LR_SCALINGS)}, not {self.lr_scaling!r}")
        if not 0.0 < self.warmup < 1.0:
            raise ValueError(f"warmup is a fraction of the steps in (0, 1), got {self.warmup!r}")
        for name in ("epochs", "batch_size", "base_batch", "accumulate"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if not (self.lr > 0 and self.weight_decay >= 0):
            raise ValueError(f"lr must be > 0 and weight_decay ≥ 0, got {self.lr!r}, {self.weight_decay!r}")

    @property
    def peak_lr(self) -> float:
        ratio = self.batch_size / self.base_batch
        return self.lr * {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[self.lr_scaling]


@contextlib.contextmanager
def frozen_running_stats(model: torch.nn.Module, frozen: bool) -> Iterator[None]:
    """Batch norms normalise with the batch but leave their running statistics alone (momentum 0)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             and m.momentum is not None] if frozen else []
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


def _fingerprint(predictor: TrainablePredictor, schedule: Schedule, y: torch.Tensor, seed: int, augment: bool,
                 adversarial: Attack | None, semi: Any, unlabelled: int) -> dict:
    return {"predictor": {k: v for k, v in predictor.config.items()}, "schedule": asdict(schedule), "seed": seed,
            "augment": augment, "adversarial": adversarial.describe() if adversarial else None,
            "semi_supervised": semi.describe() if semi is not None else None, "unlabelled": unlabelled,
            "crops": len(y), "sum_of_targets": round(float(y.double().sum()), 3)}


def _load_checkpoint(path: Path, fingerprint: dict) -> dict:
    try:
        state = load_weights(path)
    except NotWeightsError as error:
        raise CheckpointError(f"{path}: not a cryorl perception checkpoint ({error})") from None
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path} to resume from") from None
    except Exception as error:                       # noqa: BLE001 (torch raises many kinds for a bad file)
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(error).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a cryorl perception checkpoint")
    differs = sorted(k for k in fingerprint if state["fingerprint"].get(k) != fingerprint[k])
    if differs:
        raise CheckpointError(f"{path} is a checkpoint of another training run ({', '.join(differs)} differ): "
                              "resume with the same settings and data, or start afresh elsewhere")
    return state


def train(predictor: TrainablePredictor, crops: np.ndarray, ctf: np.ndarray, *,
          validation: tuple[np.ndarray, np.ndarray] | None = None, schedule: Schedule = Schedule(),
          augment: bool = True, seed: int = 0, progress: bool = True, adversarial: Attack | None = None,
          semi: Any = None, unlabelled: np.ndarray | None = None, checkpoint: str | Path | None = None,
          resume: bool = False, compression: str = "none") -> pd.DataFrame:
    """Train ``predictor.model`` on ``crops`` and their CTFMaxRes (module docstring). ``adversarial``: min-max
    training under that attack; ``semi`` (e.g. :class:`cryorl.perception.semi.FixMatch`) with ``unlabelled``
    crops: semi-supervised. Runs distributed when a process group is initialised
    (:func:`cryorl.perception.distributed.start`), with gradients compressed as ``compression`` says. Returns one
    row per epoch (loss, validation metrics, seconds); every process returns rank 0's history."""
    from tqdm import tqdm

    processes = distributed.current()
    rank, world, accumulate = processes.rank, processes.world, schedule.accumulate
    if schedule.batch_size % world:
        raise ValueError(f"the global batch of {schedule.batch_size} crops does not split over {world} processes")
    missing = np.isnan(np.asarray(ctf, np.float64))
    if missing.any():
        raise ValueError(f"{int(missing.sum())} of {missing.size} crops have no CTFMaxRes (NaN): training needs "
                         "a measured value per crop; pass the unmeasured ones as unlabelled crops to semi-supervised "
                         "training, or leave them out")
    if (semi is None) != (unlabelled is None):
        raise ValueError("semi-supervised training needs both a method (semi) and unlabelled crops")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x_all = predictor.preprocess(crops)
    y_all = torch.as_tensor(predictor.targets(ctf), dtype=torch.float32)
    if len(x_all) != len(y_all):
        raise ValueError(f"{len(x_all)} crops but {len(y_all)} CTF values")
    u_all = predictor.preprocess(unlabelled) if unlabelled is not None else None
    if semi is not None:
        semi.check(predictor, len(u_all))
    model = predictor.model.to(processes.device)
    net = distributed.wrap(model, processes, compression) if processes.distributed else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.peak_lr, weight_decay=schedule.weight_decay)
    local_batch = schedule.batch_size // world
    smallest = 2 if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()) else 1
    steps_per_epoch = math.ceil(math.ceil(len(x_all) / world) / local_batch)
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=schedule.peak_lr, pct_start=schedule.warmup,
                                                      total_steps=max(schedule.epochs * steps_per_epoch, 1))
    fingerprint = _fingerprint(predictor, schedule, y_all, seed, augment, adversarial, semi,
                               0 if u_all is None else len(u_all))
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    history: list[dict] = []
    best, best_state, first_epoch = np.inf, None, 0
    if checkpoint is not None and resume:
        state = _load_checkpoint(checkpoint, fingerprint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        lr_schedule.load_state_dict(state["lr_schedule"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, best, best_state, first_epoch = state["history"], state["best"], state["best_state"], state["epoch"]
    elif checkpoint is not None and checkpoint.exists():
        raise CheckpointError(f"{checkpoint} already exists: resume from it, or choose another checkpoint path")

    for epoch in range(first_epoch, schedule.epochs):
        tic = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_all), generator=generator)
        local = order[list(DistributedSampler(order, num_replicas=world, rank=rank, shuffle=False))]
        losses, extras = [], []
        starts = range(0, len(local), local_batch)
        for start in tqdm(starts, desc=f"epoch {epoch + 1}/{schedule.epochs}", unit="batch", leave=False,
                          disable=not (progress and processes.main)):
            index = local[start:start + local_batch]
            if len(index) // accumulate < smallest:
                continue                              # a last batch too small for batch norm (same on every rank)
            n_global = len(index) * world
            shape = tuple(x_all.shape[1:])
            draws = draw_standard(n_global, shape, generator) if augment else None
            attack_start = adversarial.draw_start((n_global, *shape), generator) if adversarial else None
            semi_draws = semi.draw(n_global, len(u_all), shape, generator) if semi is not None else None
            optimizer.zero_grad()
            distributed.share_buffers(model)
            step_loss = 0.0
            micro_batches = []                        # attacked before any forward moves the running statistics
            for a in range(accumulate):
                micro = index[a::accumulate]
                if len(micro) == 0:
                    continue
                rows = Rows(start=a * world + rank, step=world * accumulate)
                x, y = x_all[micro], y_all[micro]
                if draws is not None:
                    x = apply_standard(x, draws, rows)
                if adversarial is not None:
                    x = perturb(model, predictor.loss, x, y, adversarial,
                                start=rows.take(attack_start) if attack_start is not None else None)
                micro_batches.append((a, rows, x, y))
            for a, rows, x, y in micro_batches:
                share = len(x) / len(index)
                sync = net.no_sync() if net is not model and a < accumulate - 1 else contextlib.nullcontext()
                with sync, frozen_running_stats(model, a > 0 or rank > 0):
                    if semi is None:
                        loss = predictor.loss(net(x.to(processes.device)), y.to(processes.device))
                    else:
                        loss, extra = semi.loss(net, predictor, x, y, u_all, semi_draws, rows, processes.device)
                        extras.append(extra)
                    (loss * share).backward()
                step_loss += loss.item() * share
            optimizer.step()
            lr_schedule.step()
            losses.append(step_loss)
        row = {"epoch": epoch + 1, "train_loss": distributed.mean_over_processes(float(np.mean(losses)))}
        if extras:
            row.update(pd.DataFrame(extras).mean().to_dict())
        row["seconds"] = time.perf_counter() - tic
        if validation is not None and processes.main:
            metrics = predictor.evaluate(*validation)
            row.update({f"val_{k}": v for k, v in metrics.items() if k != "holes"})
            if metrics["mae"] < best:
                best = metrics["mae"]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append(row)
        if checkpoint is not None and processes.main:
            with atomic_path(checkpoint) as tmp:
                torch.save({"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "epoch": epoch + 1,
                            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "lr_schedule": lr_schedule.state_dict(), "generator": generator.get_state(),
                            "torch_rng": torch.get_rng_state(), "history": history, "best": best,
                            "best_state": best_state}, tmp)
    if best_state is not None:
        model.load_state_dict(best_state)
    predictor.model = model.cpu()
    return pd.DataFrame(history)
