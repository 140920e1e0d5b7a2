"""CryoRL folders: both releases of the CryoRL papers' files, as ``cryorl data download`` lays them out, and the
sessions ``cryorl simulate`` writes (the same files plus ``holes.csv`` with stage positions, images and crops).

Splits are read from the CTF tables' names (``target_CTF_Y1_<split>.csv``, ``CTF_<split>_by_hl.csv``); the
whole-session file ``target_CTF_Y1.csv`` is the split ``session``.
"""
from __future__ import annotations

from pathlib import Path

from cryorl.formats.base import Grid, GridFormat, register_format
from cryorl.loaders import TIMESTAMPS_FILE, available_splits, read_cryorl_split

__all__ = ["CRYORL_FOLDER"]


def _detect(path: Path) -> bool:
    return path.is_dir() and bool(available_splits(path))


def _splits(path: Path) -> list[str]:
    return list(dict.fromkeys(split for _, split in available_splits(path)))


def _load(path: Path, split: str | None, *, era: str | None = None, predictions=None,
          missing_prediction: str = "error") -> Grid:
    from cryorl.loaders import DataFileError
    from cryorl.stage import read_stage_positions

    atlas, skipped, files = read_cryorl_split(path, split, era=era, predictions=predictions,
                                              missing_prediction=missing_prediction)
    notes = [f"skipped {n} rows of {files['ctf'].name}: {reason}" for reason, n in skipped.items()]
    table = path / "holes.csv"
    stage = None
    if table.is_file():
        try:
            stage = read_stage_positions(table, atlas)
        except DataFileError as error:                 # a partial table: the grid loads, plans name holes instead
            notes.append(f"no stage positions: {error}")
    trace = path / TIMESTAMPS_FILE
    simulated = (path / "session.json").is_file()
    return Grid(atlas, path, "cryorl simulated session" if simulated else "cryorl", split,
                trace=trace if trace.is_file() else None, stage=stage, crops=crop_folder(path, split),
                notes=tuple(notes))


def crop_folder(path: Path, split: str) -> Path | None:
    """Where a folder keeps its split's hole crops: ``crops/<split>/`` or the published ``<name>/<split>/``
    (``Aldolase/train/…_crop.png``, as ``cryorl data download aldolase --crops`` writes them), one image per hole;
    else ``crops/`` (``cryorl simulate --crops``' per-patch stacks); None where there are none."""
    from cryorl.images.synth_session import CROPS_DIR
    from cryorl.perception.crops import HOLE_IMAGE_SUFFIXES

    for folder in [path / CROPS_DIR / split, *sorted(path.glob(f"*/{split}"))]:
        if folder.is_dir() and any(p.suffix.lower() in HOLE_IMAGE_SUFFIXES for p in folder.iterdir()):
            return folder
    return path / CROPS_DIR if (path / CROPS_DIR).is_dir() else None


CRYORL_FOLDER = register_format(GridFormat(
    "cryorl", "a folder of CryoRL files (target_CTF_Y1_<split>.csv or CTF_<split>_by_hl.csv with predictions)",
    _detect, _splits, _load, options=("era", "predictions", "missing_prediction")))
