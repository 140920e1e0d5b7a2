"""Look at a session's images without a notebook: the atlas, a square with its found holes, a page of hole crops.

``cryorl look DIR --out DIR/look`` writes ``atlas.png``, ``square_holes.png`` and ``hole_crops.png``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryorl.mrc import read_mrc
from cryorl.plots import new_figure, save_figure
from cryorl.vision import find_holes

__all__ = ["look_at_session"]


def _display(image: np.ndarray) -> np.ndarray:
    """Contrast-stretched float image (1st-99th percentile)."""
    lo, hi = np.percentile(image, [1, 99])
    return np.clip((image - lo) / max(hi - lo, 1e-9), 0, 1)


def _ctf_table(directory: Path) -> pd.Series | None:
    tables = sorted(directory.glob("target_CTF_*.csv")) + sorted(directory.glob("CTF_*_by_hl.csv"))
    if not tables:
        return None
    from cryorl.loaders import read_ctf_csv

    ctf = read_ctf_csv(tables[0])
    return ctf.set_index("name")["ctf_max_res"]


def plot_atlas(directory: Path):
    tiles = sorted((directory / "atlas").glob("*.mrc"))
    if not tiles:
        raise FileNotFoundError(f"no atlas tiles in {directory / 'atlas'}")
    columns = min(4, len(tiles))
    rows = int(np.ceil(len(tiles) / columns))
    figure = new_figure(3.0 * columns, 3.1 * rows)
    for k, path in enumerate(tiles):
        image, pixel = read_mrc(path)
        ax = figure.add_subplot(rows, columns, k + 1)
        ax.imshow(_display(image), cmap="gray", extent=(0, image.shape[1] * pixel / 1e4, image.shape[0] * pixel
                                                          / 1e4, 0))
        ax.set_title(path.stem[-14:], fontsize=7)
        ax.tick_params(labelsize=6)
    figure.suptitle(f"Atlas tiles ({len(tiles)}; axes in µm): squares are the bright cells of the copper mesh",
                    fontsize=9)
    figure.tight_layout()
    return figure


def plot_square_holes(path: Path, hole_diameter_um: float, hole_pitch_um: float | None):
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle

    image, pixel = read_mrc(path)
    holes = find_holes(image, pixel / 1e4, hole_diameter_um, hole_pitch_um=hole_pitch_um)
    figure = new_figure(11, 5.6)
    for k, zoom in enumerate((None, 120)):
        ax = figure.add_subplot(1, 2, k + 1)
        ax.imshow(_display(image), cmap="gray")
        circles = [Circle((x, y), r) for x, y, r in holes[["x", "y", "radius"]].itertuples(index=False)]
        colours = np.where(holes["detected"], "tab:green", "tab:orange")
        ax.add_collection(PatchCollection(circles, facecolor="none", edgecolor=colours, linewidth=0.5))
        if zoom:
            cy, cx = np.array(image.shape) / 2
            ax.set_xlim(cx - zoom, cx + zoom)
            ax.set_ylim(cy + zoom, cy - zoom)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(f"{path.stem}: {len(holes)} holes ({holes['detected'].mean():.0%} seen directly, green; the "
                    f"rest placed by the {holes.attrs['lattice'].kind} lattice fit, orange); right: centre zoomed",
                    fontsize=9)
    figure.tight_layout()
    return figure


def plot_crops(directory: Path, n: int = 48):
    from cryorl.atlas_images import find_patch_holes, patch_images
    from cryorl.imaging import cut_crops

    ctf = _ctf_table(directory)
    crops, labels = [], []
    stacks = sorted((directory / "crops").glob("*.mrc")) if (directory / "crops").is_dir() else []
    if stacks:
        for path in stacks:
            stack, _ = read_mrc(path)
            stack = stack if stack.ndim == 3 else stack[None]
            for k, crop in enumerate(stack):
                crops.append(crop)
                labels.append(f"{path.stem}_{k + 1:05d}en-a")
            if len(crops) >= n:
                break
    else:
        for path in patch_images(directory):
            image, _ = read_mrc(path)
            holes = find_patch_holes(path)
            h, w = image.shape
            centres = holes[["x", "y"]].to_numpy() + np.array([(w - 1) / 2, (h - 1) / 2])
            crops.extend(cut_crops(image, centres))
            labels.extend(f"{path.stem} #{k + 1}" for k in range(len(holes)))
            if len(crops) >= n:
                break
    crops, labels = crops[:n], labels[:n]
    lo, hi = np.percentile(np.stack(crops), [1, 99]) if crops else (0, 1)      # one scale: brightness compares
    columns = 8
    rows = int(np.ceil(len(crops) / columns))
    figure = new_figure(1.4 * columns, 1.55 * rows)
    for k, (crop, label) in enumerate(zip(crops, labels)):
        ax = figure.add_subplot(rows, columns, k + 1)
        ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi)
        value = ctf.get(label, np.nan) if ctf is not None else np.nan
        title = f"{value:.1f} Å" if np.isfinite(value) and value < 100 else ("fit failed" if np.isfinite(value)
                                                                            else "")
        ax.set_title(title, fontsize=7, color="tab:green" if np.isfinite(value) and value <= 6 else "black")
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle("Hole crops (150 × 150) with measured CTFMaxRes (green: ≤ 6 Å)", fontsize=9)
    figure.tight_layout()
    return figure


def look_at_session(directory: str | os.PathLike, out: str | os.PathLike | None = None,
                    hole_diameter_um: float = 1.0, hole_pitch_um: float | None = 2.0) -> list[Path]:
    """Render ``atlas.png``, ``square_holes.png`` (the first square) and ``hole_crops.png`` into ``out``
    (default ``DIR/look``); returns their paths."""
    directory = Path(directory)
    out = Path(out) if out is not None else directory / "look"
    squares = sorted((directory / "squares").glob("*.mrc"))
    if not squares:
        raise FileNotFoundError(f"no square images in {directory / 'squares'}")
    written = []
    for name, figure in (("atlas.png", plot_atlas(directory)),
                         ("square_holes.png", plot_square_holes(squares[0], hole_diameter_um, hole_pitch_um)),
                         ("hole_crops.png", plot_crops(directory))):
        save_figure(figure, out / name, dpi=60)
        written.append(out / name)
    return written
