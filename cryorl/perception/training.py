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
from dataclasses import asdict, dataclass, field
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

__all__ = ["Schedule", "train", "CheckpointError", "LR_SCALINGS", "frozen_running_stats", "checkpoint_path"]

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


def checkpoint_path(out: str | Path, checkpoint: str | Path | None = None, resume: bool = False) -> Path:
    """Where a training run that writes ``out`` checkpoints after every epoch: ``checkpoint``, default
    ``OUT.checkpoint.pt`` beside ``out``. A checkpoint there is an interrupted run's: a new run is refused unless
    it resumes it (``resume``), and ``resume`` needs one."""
    out = Path(out)
    path = Path(checkpoint) if checkpoint is not None else out.with_name(f"{out.name}.checkpoint.pt")
    if path.exists() and not resume:
        raise FileExistsError(f"{path} holds the checkpoint of an interrupted run: pass --resume to continue "
                              "it, or --checkpoint to put this run's elsewhere")
    if resume and not path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    return path


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


@dataclass
class _Run:
    """The state one training run carries from step to step (and into its checkpoint)."""
    model: torch.nn.Module
    net: torch.nn.Module                    # the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    lr_schedule: Any
    generator: torch.Generator
    fingerprint: dict
    history: list = field(default_factory=list)
    best: float = np.inf
    best_state: dict | None = None
    epoch: int = 0

    def restore(self, path: Path) -> None:
        """Continue from the checkpoint at ``path`` (refused when it is another run's)."""
        state = _load_checkpoint(path, self.fingerprint)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history, self.best, self.best_state, self.epoch = (state["history"], state["best"],
                                                                state["best_state"], state["epoch"])

    def save(self, path: Path) -> None:
        """The whole state after an epoch, written atomically."""
        with atomic_path(path) as tmp:
            torch.save({"format": CHECKPOINT_FORMAT, "fingerprint": self.fingerprint, "epoch": self.epoch,
                        "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "lr_schedule": self.lr_schedule.state_dict(), "generator": self.generator.get_state(),
                        "torch_rng": torch.get_rng_state(), "history": self.history, "best": self.best,
                        "best_state": self.best_state}, tmp)

    def validate(self, predictor: TrainablePredictor, validation: tuple[np.ndarray, np.ndarray], row: dict) -> None:
        """Validation metrics into ``row``; the weights of the lowest validation MAE so far are kept."""
        metrics = predictor.evaluate(*validation)
        row.update({f"val_{k}": v for k, v in metrics.items() if k != "holes"})
        if metrics["mae"] < self.best:
            self.best = metrics["mae"]
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def _check_inputs(schedule: Schedule, world: int, ctf: np.ndarray, semi: Any, unlabelled: np.ndarray | None) -> None:
    if schedule.batch_size % world:
        raise ValueError(f"the global batch of {schedule.batch_size} crops does not split over {world} processes")
    missing = np.isnan(np.asarray(ctf, np.float64))
    if missing.any():
        raise ValueError(f"{int(missing.sum())} of {missing.size} crops have no CTFMaxRes (NaN): training needs "
                         "a measured value per crop; pass the unmeasured ones as unlabelled crops to semi-supervised "
                         "training, or leave them out")
    if (semi is None) != (unlabelled is None):
        raise ValueError("semi-supervised training needs both a method (semi) and unlabelled crops")


def _step(run: _Run, predictor: TrainablePredictor, index: torch.Tensor, data: tuple, accumulate: int,
          processes, augment: bool, adversarial: Attack | None, semi: Any) -> tuple[float, list[dict]]:
    """One optimisation step on the global batch whose local rows are ``index``: every random draw for the whole
    global batch (each process and micro-batch takes its rows), attacks before any forward pass moves the batch-norm
    statistics, gradients accumulated over the micro-batches. Returns the step's loss and the method's extras."""
    x_all, y_all, u_all = data
    rank, world = processes.rank, processes.world
    n_global = len(index) * world
    shape = tuple(x_all.shape[1:])
    draws = draw_standard(n_global, shape, run.generator) if augment else None
    attack_start = adversarial.draw_start((n_global, *shape), run.generator) if adversarial else None
    semi_draws = semi.draw(n_global, len(u_all), shape, run.generator) if semi is not None else None
    run.optimizer.zero_grad()
    distributed.share_buffers(run.model)
    micro_batches = []
    for a in range(accumulate):
        micro = index[a::accumulate]
        if len(micro) == 0:
            continue
        rows = Rows(start=a * world + rank, step=world * accumulate)
        x, y = x_all[micro], y_all[micro]
        if draws is not None:
            x = apply_standard(x, draws, rows)
        if adversarial is not None:
            x = perturb(run.model, predictor.loss, x, y, adversarial,
                        start=rows.take(attack_start) if attack_start is not None else None)
        micro_batches.append((a, rows, x, y))
    step_loss, extras = 0.0, []
    for a, rows, x, y in micro_batches:
        share = len(x) / len(index)
        last = a == accumulate - 1
        sync = run.net.no_sync() if run.net is not run.model and not last else contextlib.nullcontext()
        with sync, frozen_running_stats(run.model, a > 0 or rank > 0):
            if semi is None:
                loss = predictor.loss(run.net(x.to(processes.device)), y.to(processes.device))
            else:
                loss, extra = semi.loss(run.net, predictor, x, y, u_all, semi_draws, rows, processes.device)
                extras.append(extra)
            (loss * share).backward()
        step_loss += loss.item() * share
    run.optimizer.step()
    run.lr_schedule.step()
    return step_loss, extras


def _start_run(predictor: TrainablePredictor, schedule: Schedule, data: tuple, seed: int, augment: bool,
               adversarial: Attack | None, semi: Any, processes, compression: str) -> _Run:
    """The model on its device, its optimizer and one-cycle schedule, the seeded generator of every draw."""
    _, y_all, u_all = data
    generator = torch.Generator().manual_seed(seed)
    model = predictor.model.to(processes.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.peak_lr, weight_decay=schedule.weight_decay)
    steps_per_epoch = math.ceil(math.ceil(len(y_all) / processes.world) / (schedule.batch_size // processes.world))
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=schedule.peak_lr, pct_start=schedule.warmup,
                                                      total_steps=max(schedule.epochs * steps_per_epoch, 1))
    net = distributed.wrap(model, processes, compression) if processes.distributed else model
    return _Run(model, net, optimizer, lr_schedule, generator,
                _fingerprint(predictor, schedule, y_all, seed, augment, adversarial, semi,
                             0 if u_all is None else len(u_all)))


def _open_checkpoint(run: _Run, checkpoint: str | Path | None, resume: bool) -> Path | None:
    """Resume ``run`` from ``checkpoint``, or refuse to start a run over someone's existing checkpoint."""
    if checkpoint is None:
        return None
    checkpoint = Path(checkpoint)
    if resume:
        run.restore(checkpoint)
    elif checkpoint.exists():
        raise CheckpointError(f"{checkpoint} already exists: resume from it, or choose another checkpoint path")
    return checkpoint


def _epoch(run: _Run, predictor: TrainablePredictor, data: tuple, schedule: Schedule, processes, augment: bool,
           adversarial: Attack | None, semi: Any, progress: bool) -> dict:
    """One epoch of steps over this process's share of a fresh permutation; returns its history row (the mean
    loss over all processes, the method's extras, seconds)."""
    from tqdm import tqdm

    tic = time.perf_counter()
    run.model.train()
    rank, world, accumulate = processes.rank, processes.world, schedule.accumulate
    local_batch = schedule.batch_size // world
    has_batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in run.model.modules())
    smallest = 2 if has_batch_norm else 1
    order = torch.randperm(len(data[0]), generator=run.generator)
    local = order[list(DistributedSampler(order, num_replicas=world, rank=rank, shuffle=False))]
    losses, extras = [], []
    for start in tqdm(range(0, len(local), local_batch), desc=f"epoch {run.epoch + 1}/{schedule.epochs}",
                      unit="batch", leave=False, disable=not (progress and processes.main)):
        index = local[start:start + local_batch]
        if len(index) // accumulate < smallest:
            continue                              # a last batch too small for batch norm (same on every rank)
        loss, extra = _step(run, predictor, index, data, accumulate, processes, augment, adversarial, semi)
        losses.append(loss)
        extras += extra
    row = {"epoch": run.epoch + 1, "train_loss": distributed.mean_over_processes(float(np.mean(losses)))}
    if extras:
        row.update(pd.DataFrame(extras).mean().to_dict())
    row["seconds"] = time.perf_counter() - tic
    return row


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
    processes = distributed.current()
    _check_inputs(schedule, processes.world, ctf, semi, unlabelled)
    torch.manual_seed(seed)
    x_all = predictor.preprocess(crops)
    y_all = torch.as_tensor(predictor.targets(ctf), dtype=torch.float32)
    if len(x_all) != len(y_all):
        raise ValueError(f"{len(x_all)} crops but {len(y_all)} CTF values")
    u_all = predictor.preprocess(unlabelled) if unlabelled is not None else None
    if semi is not None:
        semi.check(predictor, len(u_all))
    data = (x_all, y_all, u_all)
    run = _start_run(predictor, schedule, data, seed, augment, adversarial, semi, processes, compression)
    checkpoint = _open_checkpoint(run, checkpoint, resume)

    while run.epoch < schedule.epochs:
        row = _epoch(run, predictor, data, schedule, processes, augment, adversarial, semi, progress)
        if validation is not None and processes.main:
            run.validate(predictor, validation, row)
        run.history.append(row)
        run.epoch += 1
        if checkpoint is not None and processes.main:
            run.save(checkpoint)
    if run.best_state is not None:
        run.model.load_state_dict(run.best_state)
    predictor.model = run.model.cpu()
    return pd.DataFrame(run.history)
