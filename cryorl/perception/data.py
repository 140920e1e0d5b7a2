"""The crops and CTFMaxRes a perception command works on: a data folder's hole crops labelled by its split's CTF
table (opened with :func:`cryorl.load_grid`), or simulated grids; and how training splits them (labelled,
unlabelled, held out)."""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["labelled_crops", "simulated_crops", "perception_crops", "training_data", "HELD_OUT"]

HELD_OUT = 0.2         # the share of a session's measured holes held out to validate a predictor trained on it


def labelled_crops(data: str | os.PathLike, split: str | None = None, *, labelled_only: bool = True, era=None,
                   log=lambda text: print(text, file=sys.stderr)) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Hole names, crops and CTFMaxRes (NaN where the CTF table has no row) of a data folder's split.

    A folder without a CTF table gives its crops (``crops/`` or the folder itself) with ``None`` for the CTF. With
    ``labelled_only`` the crops without a CTF row are left out, and counted through ``log``.
    """
    from cryorl.formats import load_grid
    from cryorl.loaders import available_splits
    from cryorl.perception.crops import load_crops

    data = Path(data).expanduser()
    if data.is_dir() and not available_splits(data):
        from cryorl.images.synth_session import CROPS_DIR

        names, crops = load_crops(data / CROPS_DIR if (data / CROPS_DIR).is_dir() else data)
        return names, crops, None
    with warnings.catch_warnings():               # only the CTF labels the crops: predictions do not matter
        warnings.simplefilter("ignore")
        grid = load_grid(data, split, era=era, missing_prediction="worst")
    if grid.crops is None:
        raise FileNotFoundError(f"no hole crops in {data} for its {grid.split} split (crops/{grid.split}/, "
                                f"<name>/{grid.split}/<hole>_crop.png or crops/<patch>.mrc); `cryorl data download "
                                "aldolase --crops` fetches the published ones, `cryorl simulate --crops` writes some")
    names, crops = load_crops(grid.crops)
    table = grid.atlas.source
    values = pd.Series(grid.atlas.true_ctf, index=grid.atlas.names).reindex(names).to_numpy(np.float64)
    labelled = np.isfinite(values)
    if not labelled.all() and labelled_only:
        if not labelled.any():
            raise ValueError(f"none of the {len(names)} crops in {grid.crops} has a row in {table}: nothing to "
                             "train or evaluate on")
        log(f"skipping {int((~labelled).sum())} of {len(names)} crops without a CTF row in {table}")
        names = [n for n, keep in zip(names, labelled) if keep]
        crops, values = crops[labelled], values[labelled]
    return names, crops, values


def simulated_crops(seeds: list[int]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Hole names, rendered crops and true CTFMaxRes of simulated grids."""
    from cryorl.perception.crops import simulated_crop_dataset

    crops, table = simulated_crop_dataset(seeds)
    return list(table["hole"]), crops, table["true_ctf"].to_numpy()


def perception_crops(data: str | os.PathLike | None, split: str | None = None, seeds=None, *,
                     labelled_only: bool = True) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Hole names, crops and CTFMaxRes: ``data``'s crops labelled by its split's CTF table
    (:func:`labelled_crops`), or without ``data`` the simulated grids ``seeds`` (:func:`simulated_crops`)."""
    if data is not None:
        return labelled_crops(data, split, labelled_only=labelled_only)
    return simulated_crops(seeds)


def training_data(data: str | os.PathLike | None, split: str | None, grids, val_grids, *, seed: int = 0,
                  labelled_fraction: float = 1.0, semi: bool = False):
    """The crops a predictor trains and validates on: ``(crops, ctf, unlabelled, (val_crops, val_ctf))``.

    Only the CTFMaxRes of ``labelled_fraction`` of the crops is kept (drawn with ``seed``); the rest, and crops the
    CTF table lacks, are the ``unlabelled`` crops with ``semi`` (None without). Validation is a :data:`HELD_OUT`
    share of ``data``'s labelled crops (drawn with the same generator), or the simulated grids ``val_grids``."""
    _, crops, ctf = perception_crops(data, split, grids, labelled_only=not semi)
    if ctf is None:
        raise ValueError(f"no CTF table (target_CTF_*.csv or CTF_*_by_hl.csv) in {data} to train on")
    rng = np.random.default_rng(seed)
    labelled = np.isfinite(ctf)
    if labelled_fraction < 1.0:
        labelled &= rng.random(len(crops)) < labelled_fraction
    unlabelled = crops[~labelled] if semi else None
    crops, ctf = crops[labelled], ctf[labelled]
    if data is not None:                              # hold out a share of the session's measured holes
        held = rng.random(len(crops)) < HELD_OUT
        return crops[~held], ctf[~held], unlabelled, (crops[held], ctf[held])
    _, val_crops, val_ctf = simulated_crops(val_grids)
    return crops, ctf, unlabelled, (val_crops, val_ctf)
