"""Data on disk, as ``cryorl data`` handles it: fetch a published dataset (:func:`fetch_data`), check published
files against their SHA-256 (:func:`verify_folder`), and say what a data path holds (:func:`describe_data`)."""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

__all__ = ["fetch_data", "verify_folder", "describe_data"]


def fetch_data(name: str = "aldolase", dest: str | os.PathLike | None = None, *, era: str = "2023",
               split: str = "all", base_url: str | None = None, overwrite: bool = False, crops: bool = False,
               workers: int = 8, progress: bool = True) -> Path:
    """``cryorl data download``: the dataset ``name`` (:func:`cryorl.download.download_dataset`) or, with
    ``crops``, its published hole crops (:func:`cryorl.crop_store.download_crops`, 2023 release only) into
    ``dest`` (default: the cache); returns the folder."""
    from cryorl.download import download_dataset

    if crops:
        from cryorl.crop_store import download_crops

        if era != "2023":
            raise ValueError("--crops: the published hole crops belong to the 2023 release (--era 2023)")
        return download_crops(dest, split=split, base_url=base_url, workers=workers, overwrite=overwrite,
                              progress=progress)
    return download_dataset(name, dest, era=era, split=split, base_url=base_url, overwrite=overwrite)


def verify_folder(folder: str | os.PathLike, *, era: str | None = None, crops: bool = False,
                  echo: Callable[[str], None] = print) -> int:
    """``cryorl data verify``: each published file in ``folder`` (and, with ``crops``, each published hole crop)
    checked against its SHA-256, one ``STATUS FILE`` line to ``echo`` each; returns how many are intact. A file
    that differs, or no published file at all, is an error."""
    from cryorl.download import verify_dataset

    rows = verify_dataset(folder, era=era)
    if crops:
        from cryorl.crop_store import verify_crops

        rows += verify_crops(folder)
    for file, status in rows:
        echo(f"{status:8s} {file}")
    differs = [file for file, status in rows if status == "differs"]
    present = [file for file, status in rows if status == "ok"]
    if differs:
        raise ValueError(f"{len(differs)} file(s) in {folder} differ from the published ones (first: {differs[0]}); "
                         "fetch them again with `cryorl data download aldolase --overwrite`")
    if not present:
        raise FileNotFoundError(f"no published file in {folder}")
    return len(present)


def describe_data(path: str | os.PathLike, *, ctf: str | os.PathLike | None = None, split: str | None = None,
                  era: str | None = None, threshold: float = 6.0) -> list[str]:
    """``cryorl data info``: what a data path holds (format, splits, trace, crops, stage positions, what was
    skipped) and its grid's hierarchy counts and quality statistics (of the measured holes), as lines."""
    from cryorl.formats import find_format, load_grid

    path = Path(path)
    fmt = find_format(path)
    present = fmt.splits(path.expanduser())
    grid = load_grid(path, split, era=era, ctf=ctf)
    trace = grid.human_trace()
    lines = [f"{path}: {grid.format} ({fmt.description})" + (f"; splits: {', '.join(present)}" if present else ""),
             str(grid.atlas), *([f"split: {grid.split}"] if grid.split else []),
             f"human trace: {f'{len(trace)} exposed holes from {trace.source}' if trace else 'none'}",
             f"hole crops: {grid.crops if grid.crops is not None else 'none'}",
             f"stage positions: {'yes' if grid.stage is not None else 'none'}", *grid.notes]
    return lines + _quality_lines(grid.atlas, threshold)


def _quality_lines(atlas, threshold: float) -> list[str]:
    """The grid's statistics: hierarchy counts, and quality from its measured holes only (a note says which)."""
    import numpy as np

    from cryorl.gridstats import grid_statistics

    lines = []
    measured = np.isfinite(atlas.true_ctf)
    with np.errstate(all="ignore"), warnings.catch_warnings():      # the quality of no measured hole is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = grid_statistics(atlas, threshold)
    hierarchy = list(stats)[:9]                     # the counts; the rest describes the measured holes' quality
    if not measured.any():
        stats = {k: stats[k] for k in hierarchy}
        lines.append("no hole has a measured CTFMaxRes: give the CTF results (--ctf) for quality statistics")
    elif not measured.all():
        quality = grid_statistics(atlas.subset(measured), threshold)
        stats = {**{k: stats[k] for k in hierarchy}, **{k: v for k, v in quality.items() if k not in hierarchy}}
        lines.append(f"quality statistics of the {int(measured.sum())} measured holes:")
    return lines + [f"{key:45s} {value:10.3f}" if isinstance(value, float) else f"{key:45s} {value:10d}"
                    for key, value in stats.items()]
