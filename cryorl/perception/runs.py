"""What ``cryorl perception`` runs, callable from Python with the command's defaults: train a hole-quality predictor
(:func:`train_predictor`), evaluate it (:func:`evaluate_predictor`), attack it (:func:`attack_predictor`), write
its predictions (:func:`predict_holes`), score a predictions file (:func:`score_file`). Crops come from a session
folder (``data``) or simulated grids (``grids``); :func:`cryorl.perception.explain.explain_holes` draws what made
holes bad."""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryorl.perception import distributed
from cryorl.perception.data import perception_crops, training_data
from cryorl.perception.predictor import HoleQualityPredictor
from cryorl.perception.robust import Attack

__all__ = ["train_predictor", "evaluate_predictor", "attack_predictor", "predict_holes", "score_file",
           "make_attack"]


def make_attack(method: str = "pgd", epsilon: float = 0.05, norm: str = "linf", steps: int = 5,
                step_size: float | None = None) -> Attack:
    """The attack ``--method``/``--adversarial`` names: FGSM (one step), or PGD of ``steps`` steps."""
    if method == "fgsm":
        return Attack.fgsm(epsilon, norm=norm)
    return Attack(epsilon=epsilon, steps=steps, step_size=step_size, norm=norm)


def _semi_method(augment_policy: str, confidence: float, weight: float, ratio: int, temperature: float):
    """FixMatch with the strong augmentation ``augment_policy`` names ('default', 'search' — searched later — or a
    policy JSON file)."""
    from cryorl.perception.augment import DEFAULT_POLICY, AugmentPolicy
    from cryorl.perception.semi import FixMatch

    policy = DEFAULT_POLICY
    if augment_policy not in ("default", "search"):
        path = Path(augment_policy)
        try:
            policy = AugmentPolicy.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise FileNotFoundError(f"--augment-policy {path}: no such file (or say 'default' or 'search')") from None
        except (json.JSONDecodeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None
    return FixMatch(confidence=confidence, weight=weight, ratio=ratio, policy=policy, temperature=temperature)


def _semi_supervised(settings: dict, make_predictor, crops, ctf, unlabelled, validation, options: dict):
    """FixMatch as ``settings`` say and, with ``augment_policy='search'``, its policy searched on the held-out
    labelled holes now; returns the method and the search's table (None without a search)."""
    from cryorl.perception.semi import search_policy

    if unlabelled is None or len(unlabelled) == 0:
        raise ValueError("--semi-supervised needs unlabelled crops: a --labelled-fraction below 1, or a session "
                         "whose CTF table lacks some holes")
    method = _semi_method(settings["augment_policy"], settings["confidence"], settings["unlabelled_weight"],
                          settings["unlabelled_ratio"], settings["temperature"])
    if settings["augment_policy"] != "search":
        return method, None
    policy, search = search_policy(make_predictor, crops, ctf, unlabelled, validation,
                                   candidates=settings["policy_trials"], epochs=settings["search_epochs"],
                                   method=method, seed=settings["seed"], batch_size=settings["batch_size"],
                                   lr=settings["lr"], **{k: v for k, v in options.items() if k != "compression"})
    return dataclasses.replace(method, policy=policy), search


def _fit(settings: dict, data, processes, checkpoint: Path, progress: bool):
    """The training proper: data, FixMatch (and its policy search), the predictor fitted; returns the predictor,
    its history, the labelled crops' count, the attack, the method and the search table."""
    semi = settings["semi_supervised"] is not None
    crops, ctf, unlabelled, validation = training_data(
        data, settings["split"], settings["grids"], settings["val_grids"], seed=settings["seed"],
        labelled_fraction=settings["labelled_fraction"], semi=semi)

    def make_predictor() -> HoleQualityPredictor:
        torch.manual_seed(settings["seed"])           # the same initial weights in every process and run
        return HoleQualityPredictor(settings["backbone"], target=settings["target"], loss=settings["loss"],
                                    input_size=settings["input_size"])

    warmup = settings["warmup_epochs"]
    options = {"lr_scaling": settings["lr_scaling"], "accumulate": settings["accumulate"],
               "compression": settings["grad_compression"],
               "warmup": warmup / settings["epochs"] if warmup is not None else settings["warmup_fraction"]}
    method, search = _semi_supervised(settings, make_predictor, crops, ctf, unlabelled, validation,
                                      options) if semi else (None, None)
    predictor = make_predictor()
    attack = make_attack(settings["adversarial"], settings["epsilon"], settings["norm"], settings["attack_steps"],
                         settings["step_size"]) if settings["adversarial"] else None
    history = predictor.fit(crops, ctf, validation=validation, epochs=settings["epochs"],
                            batch_size=settings["batch_size"], lr=settings["lr"], seed=settings["seed"],
                            progress=progress and processes.main, adversarial=attack, semi=method,
                            unlabelled=unlabelled, checkpoint=checkpoint, resume=settings["resume"], **options)
    return predictor, history, len(crops), attack, method, search


def train_predictor(out: str | os.PathLike, *, data: str | os.PathLike | None = None, split: str | None = None,
                    grids: Sequence[int] = (1, 2, 3, 4), val_grids: Sequence[int] = (8,), recipe: str = "default",
                    backbone: str | None = None, target: str | None = None, loss: str | None = None,
                    input_size: int | None = None, epochs: int | None = None, batch_size: int | None = None,
                    lr: float | None = None, seed: int = 0, lr_scaling: str = "none",
                    warmup_epochs: float | None = None, accumulate: int = 1,
                    checkpoint: str | os.PathLike | None = None, resume: bool = False,
                    distributed_run: bool = False, backend: str = "auto", grad_compression: str = "none",
                    semi_supervised: str | None = None, labelled_fraction: float = 1.0, confidence: float = 0.3,
                    temperature: float = 0.5, unlabelled_weight: float = 1.0, unlabelled_ratio: int = 3,
                    augment_policy: str = "default", policy_trials: int = 8, search_epochs: int = 1,
                    adversarial: str | None = None, epsilon: float = 0.05, norm: str = "linf",
                    attack_steps: int = 5, step_size: float | None = None, overwrite: bool = False,
                    progress: bool = True, threads: int = 2) -> pd.DataFrame | None:
    """``cryorl perception train``: a :class:`HoleQualityPredictor` trained as ``recipe`` says (each setting given
    overrides its own) on ``data``'s crops (a fifth held out to validate) or the simulated ``grids`` (validated on
    ``val_grids``), saved into the folder ``out``; adversarially (``adversarial``: 'pgd' or 'fgsm'), semi-supervised
    (``semi_supervised='fixmatch'``) or data-parallel under torchrun (``distributed_run``) when asked. It
    checkpoints after every epoch (:func:`~cryorl.perception.training.checkpoint_path`; ``resume`` continues an
    interrupted run). Returns the history (one row per epoch) in the process that writes, None in the others."""
    settings = {k: v for k, v in locals().items() if k not in ("out", "data", "progress", "threads", "overwrite")}
    from cryorl.outputs import check_output_folder, reserve_output
    from cryorl.perception.recipes import RECIPES, apply_recipe
    from cryorl.perception.training import checkpoint_path

    settings.update(apply_recipe(recipe, {k: settings.get(k) for k in RECIPES[recipe]}))
    torch.set_num_threads(threads)
    out = Path(out)
    check_output_folder(out, overwrite=overwrite, what="predictor", inputs=[data])
    checkpoint = checkpoint_path(out, checkpoint, resume)
    if not 0.0 < labelled_fraction <= 1.0:
        raise ValueError(f"--labelled-fraction must be in (0, 1], got {labelled_fraction:g}")
    processes = distributed.start(backend) if distributed_run else distributed.current()
    # the writing process holds --out (and the checkpoint beside it) for the whole run: a second run is refused
    reservation = reserve_output(out, what="predictor") if processes.main else None
    try:
        predictor, history, labelled, attack, method, search = _fit(settings, data, processes, checkpoint, progress)
        if not processes.main:
            return None
        _save(predictor, out, overwrite, data, settings, history, labelled, attack, method, search, processes.world)
        checkpoint.unlink(missing_ok=True)            # the run finished: its checkpoint is spent
        return history
    finally:
        if reservation is not None:
            reservation.release()
        if distributed_run:
            distributed.stop()


def _save(predictor, out: Path, overwrite: bool, data, settings: dict, history: pd.DataFrame, labelled: int,
          attack, method, search, world: int) -> None:
    """The predictor and how it was trained (and the policy search's table) into the folder ``out``."""
    from cryorl.outputs import output_folder

    with output_folder(out, overwrite=overwrite, what="predictor", inputs=[data]) as folder:
        predictor.save(folder, {"train": str(data or f"simulated grids {settings['grids']}"),
                                "labelled_crops": int(labelled), "labelled_fraction": settings["labelled_fraction"],
                                "validation": f"a fifth of {data}" if data else
                                f"simulated grids {settings['val_grids']}", "epochs": settings["epochs"],
                                "adversarial": attack.describe() if attack else None,
                                "semi_supervised": method.describe() if method else None,
                                "augment_policy": method.policy.to_dict() if method else None,
                                "processes": world, "global_batch": settings["batch_size"],
                                "history": history.to_dict(orient="records")})
        if search is not None:
            search.to_csv(folder / "policy_search.csv", index=False)


def _labelled(model, data, split, grids, what: str, threads: int):
    """The predictor at ``model`` and the labelled crops it is measured on (an error where there is no CTF)."""
    torch.set_num_threads(threads)
    predictor = HoleQualityPredictor.load(model)
    _, crops, ctf = perception_crops(data, split, grids)
    if ctf is None:
        raise ValueError(f"no CTF table in {data} to {what} against")
    return predictor, crops, ctf


def evaluate_predictor(model: str | os.PathLike, *, data: str | os.PathLike | None = None, split: str | None = None,
                       grids: Sequence[int] = (9,), threshold: float = 6.0, threads: int = 2) -> dict:
    """``cryorl perception evaluate``: MAE, correlation and accuracy at ``threshold`` of the predictor saved at
    ``model`` on ``data``'s labelled crops or the simulated ``grids``."""
    predictor, crops, ctf = _labelled(model, data, split, grids, "evaluate", threads)
    return predictor.evaluate(crops, ctf, threshold)


def attack_predictor(model: str | os.PathLike, *, data: str | os.PathLike | None = None, split: str | None = None,
                     grids: Sequence[int] = (9,), threshold: float = 6.0, method: str = "pgd",
                     epsilon: float = 0.05, norm: str = "linf", attack_steps: int = 5, step_size: float | None = None,
                     seed: int = 0, threads: int = 2) -> pd.DataFrame:
    """``cryorl perception attack``: the metrics of :func:`evaluate_predictor` on clean crops and under the attack
    (one row each)."""
    predictor, crops, ctf = _labelled(model, data, split, grids, "attack", threads)
    attack = make_attack(method, epsilon, norm, attack_steps, step_size)
    rows = {"clean": predictor.evaluate(crops, ctf, threshold),
            attack.describe(): predictor.evaluate_attacked(crops, ctf, attack, threshold, seed=seed)}
    return pd.DataFrame(rows).T


def predict_holes(model: str | os.PathLike, out: str | os.PathLike, *, data: str | os.PathLike | None = None,
                  split: str | None = None, grids: Sequence[int] = (9,), overwrite: bool = False,
                  progress: bool = True, threads: int = 2) -> np.ndarray:
    """``cryorl perception predict``: a CryoRL predictions file (one ``name CTFMaxRes`` line per crop, measured or
    not) at ``out`` (replaced only with ``overwrite``); returns the predictions."""
    from cryorl.outputs import check_output_file, output_file

    torch.set_num_threads(threads)
    check_output_file(out, overwrite=overwrite, what="predictions", inputs=[model, data])
    predictor = HoleQualityPredictor.load(model)
    names, crops, _ = perception_crops(data, split, grids, labelled_only=False)
    predicted = predictor.predict(crops, progress=progress)
    with output_file(out, overwrite=overwrite, what="predictions", inputs=[model, data]) as tmp:
        tmp.write_text("".join(f"{n} {v:.2f}\n" for n, v in zip(names, predicted)))
    return predicted


def score_file(predictions: str | os.PathLike, data: str | os.PathLike, *, split: str | None = None,
               era: str | None = None, threshold: float = 6.0, threads: int = 1) -> dict:
    """``cryorl perception score``: a predictions file scored against ``data``'s measured CTFMaxRes
    (:func:`cryorl.perception.score.score_predictions`)."""
    from cryorl.formats import load_grid
    from cryorl.perception.score import score_predictions

    torch.set_num_threads(threads)
    return score_predictions(predictions, load_grid(data, split, era=era).atlas, threshold)
