"""Look at a session's images without a notebook: the atlas, a square with its found holes, a page of hole crops.

``cryorl look DIR --out DIR/look`` writes ``atlas.png``, ``square_holes.png`` and ``hole_crops.png`` at
:data:`LOOK_DPI`. Every image carries a scale bar in µm from its MRC header's pixel size; an image whose header has
no pixel size says so instead.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryorl.figures import new_figure, save_figure
from cryorl.images.mrc import MrcError, read_mrc
from cryorl.images.synth_session import CROPS_DIR
from cryorl.images.vision import find_holes

__all__ = ["look", "look_at_session", "look_inputs", "plot_atlas", "plot_square_holes", "plot_crops", "add_scale_bar",
           "LOOK_DPI"]

LOOK_DPI = 150
NO_PIXEL_SIZE = "pixel size unknown: no scale bar"


def _read_image(path: Path) -> tuple[np.ndarray, float | None]:
    """An MRC image (or stack) and its pixel size in Å, None when the header has none (a valid file otherwise)."""
    try:
        return read_mrc(path)
    except MrcError as error:
        import mrcfile

        try:
            with mrcfile.open(path, permissive=False) as mrc:
                data, pixel = np.array(mrc.data), float(mrc.voxel_size.x)
        except Exception:
            raise error from None
        if pixel > 0 or data.size == 0:
            raise
        return data, None


def _nice_length(limit: float) -> float:
    """The largest 1, 2 or 5 × 10^k not above ``limit`` (> 0)."""
    decade = 10.0 ** np.floor(np.log10(limit))
    return max(m * decade for m in (1, 2, 5) if m * decade <= limit * (1 + 1e-9))


def add_scale_bar(ax, pixel_angstrom: float | None, width_px: float, fontsize: float = 7):
    """A scale bar in µm (about a third of the ``width_px`` pixels shown at most) at the lower left of an image drawn
    in pixel coordinates on ``ax``; with no pixel size, a note saying so. Returns ``ax``."""
    if pixel_angstrom is None:
        ax.text(0.03, 0.03, NO_PIXEL_SIZE, transform=ax.transAxes, fontsize=fontsize, color="white", va="bottom",
                bbox=dict(facecolor="black", alpha=0.5, linewidth=0, pad=1.5))
        return ax
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length_um = _nice_length(width_px * pixel_angstrom / 1e4 / 3)
    bar = AnchoredSizeBar(ax.transData, length_um * 1e4 / pixel_angstrom, f"{length_um:g} µm", "lower left",
                          pad=0.3, borderpad=0.4, sep=2, color="white", frameon=True, size_vertical=width_px / 100,
                          fontproperties=dict(size=fontsize))
    bar.patch.set(facecolor="black", alpha=0.5, linewidth=0)
    ax.add_artist(bar)
    return ax


def _display(image: np.ndarray) -> np.ndarray:
    """Contrast-stretched float image (1st-99th percentile)."""
    lo, hi = np.percentile(image, [1, 99])
    return np.clip((image - lo) / max(hi - lo, 1e-9), 0, 1)


def _ctf_table(directory: Path) -> pd.Series | None:
    from cryorl.loaders import ctf_tables, read_ctf_csv

    tables = ctf_tables(directory)
    if not tables:
        return None

    ctf = read_ctf_csv(tables[0])
    return ctf.set_index("name")["ctf_max_res"]


def plot_atlas(directory: Path, axes=None):
    """Every atlas tile of ``directory/atlas``, with a scale bar, on ``axes`` (one per tile; a new figure when None);
    returns the axes."""
    tiles = sorted((directory / "atlas").glob("*.mrc"))
    if not tiles:
        raise FileNotFoundError(f"no atlas tiles in {directory / 'atlas'}")
    if axes is None:
        columns = min(4, len(tiles))
        rows = int(np.ceil(len(tiles) / columns))
        figure = new_figure(3.4 * columns, 3.5 * rows, layout="constrained")
        axes = [figure.add_subplot(rows, columns, k + 1) for k in range(len(tiles))]
        figure.suptitle(f"Atlas tiles ({len(tiles)}): squares are the bright cells of the copper mesh", fontsize=9)
    axes = np.ravel(axes)
    for ax, path in zip(axes, tiles):
        image, pixel = _read_image(path)
        ax.imshow(_display(image), cmap="gray")
        add_scale_bar(ax, pixel, image.shape[1])
        ax.set_title(path.stem[-14:], fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    return axes


def plot_square_holes(path: Path, hole_diameter_um: float, hole_pitch_um: float | None, axes=None):
    """A square image with the holes found in it (whole, and its centre zoomed), each with a scale bar, on ``axes``
    (two; a new figure when None); returns the axes."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle

    image, pixel = read_mrc(path)           # finding holes needs the pixel size: none in the header is an error
    holes = find_holes(image, pixel / 1e4, hole_diameter_um, hole_pitch_um=hole_pitch_um)
    if axes is None:
        figure = new_figure(11, 5.6, layout="constrained")
        axes = figure.subplots(1, 2)
        figure.suptitle(f"{path.stem}: {len(holes)} holes ({holes['detected'].mean():.0%} seen directly, blue; "
                        f"the rest placed by the {holes.attrs['lattice'].kind} lattice fit, orange); right: centre "
                        "zoomed", fontsize=9)
    axes = np.ravel(axes)
    for ax, zoom in zip(axes, (None, 120)):
        ax.imshow(_display(image), cmap="gray")
        circles = [Circle((x, y), r) for x, y, r in holes[["x", "y", "radius"]].itertuples(index=False)]
        colours = np.where(holes["detected"], "tab:blue", "tab:orange")
        ax.add_collection(PatchCollection(circles, facecolor="none", edgecolor=colours, linewidth=0.5))
        if zoom:
            cy, cx = np.array(image.shape) / 2
            ax.set_xlim(cx - zoom, cx + zoom)
            ax.set_ylim(cy + zoom, cy - zoom)
        add_scale_bar(ax, pixel, 2 * zoom if zoom else image.shape[1])
        ax.set_xticks([])
        ax.set_yticks([])
    return axes


def plot_crops(directory: Path, n: int = 48, axes=None):
    """Up to ``n`` hole crops (``crops/`` stacks, or cut from the patch images) on one brightness scale, titled with
    their measured CTFMaxRes and each with a scale bar, on ``axes`` (one per crop; a new figure when None); returns
    the axes."""
    from cryorl.images.imaging import cut_crops
    from cryorl.images.session_holes import find_patch_holes, patch_images

    ctf = _ctf_table(directory)
    crops, labels, pixels = [], [], []
    crop_dir = directory / CROPS_DIR
    stacks = sorted(crop_dir.glob("*.mrc")) if crop_dir.is_dir() else []
    if stacks:
        for path in stacks:
            stack, pixel = _read_image(path)
            stack = stack if stack.ndim == 3 else stack[None]
            for k, crop in enumerate(stack):
                crops.append(crop)
                labels.append(f"{path.stem}_{k + 1:05d}en-a")
                pixels.append(pixel)
            if len(crops) >= n:
                break
    else:
        for path in patch_images(directory):
            image, pixel = read_mrc(path)
            holes = find_patch_holes(path)
            h, w = image.shape
            centres = holes[["x", "y"]].to_numpy() + np.array([(w - 1) / 2, (h - 1) / 2])
            crops.extend(cut_crops(image, centres))
            labels.extend(f"{path.stem} #{k + 1}" for k in range(len(holes)))
            pixels.extend([pixel] * len(holes))
            if len(crops) >= n:
                break
    crops, labels, pixels = crops[:n], labels[:n], pixels[:n]
    lo, hi = np.percentile(np.stack(crops), [1, 99]) if crops else (0, 1)      # one scale: brightness compares
    if axes is None:
        columns = 8
        rows = int(np.ceil(len(crops) / columns)) or 1
        figure = new_figure(1.4 * columns, 1.55 * rows + 0.3, layout="constrained")
        axes = [figure.add_subplot(rows, columns, k + 1) for k in range(max(len(crops), 1))]
        size = f"{crops[0].shape[1]} × {crops[0].shape[0]} px" if crops else "none found"
        figure.suptitle(f"Hole crops ({size}) with measured CTFMaxRes (green: ≤ 6 Å)", fontsize=9)
    axes = np.ravel(axes)
    for ax, crop, label, pixel in zip(axes, crops, labels, pixels):
        ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi)
        add_scale_bar(ax, pixel, crop.shape[1], fontsize=5)
        value = ctf.get(label, np.nan) if ctf is not None else np.nan
        title = f"{value:.1f} Å" if np.isfinite(value) and value < 100 else ("fit failed" if np.isfinite(value)
                                                                            else "")
        ax.set_title(title, fontsize=7, color="tab:green" if np.isfinite(value) and value <= 6 else "black")
        ax.set_xticks([])
        ax.set_yticks([])
    return axes


def look_inputs(directory: str | os.PathLike) -> list[Path]:
    """What :func:`look_at_session` reads in a session folder (``atlas/``, ``squares/``, ``crops/``, the patch
    images, the CTF table): an output folder must not be, hold or lie inside any of them (``DIR/look`` may)."""
    from cryorl.loaders import ctf_tables

    directory = Path(directory)
    folders = [directory / name for name in ("atlas", "squares", CROPS_DIR, "patches")]
    loose = [] if (directory / "patches").is_dir() else sorted(directory.glob("*.mrc"))   # patches in DIR itself
    return [p for p in folders if p.exists()] + loose + ctf_tables(directory)


def look_at_session(directory: str | os.PathLike, out: str | os.PathLike | None = None,
                    hole_diameter_um: float = 1.0, hole_pitch_um: float | None = 2.0) -> list[Path]:
    """Render ``atlas.png``, ``square_holes.png`` (the first square) and ``hole_crops.png`` into ``out``
    (default ``DIR/look``) at :data:`LOOK_DPI`; returns their paths."""
    directory = Path(directory)
    out = Path(out) if out is not None else directory / "look"
    squares = sorted((directory / "squares").glob("*.mrc"))
    if not squares:
        raise FileNotFoundError(f"no square images in {directory / 'squares'}")
    written = []
    for name, drawn in (("atlas.png", plot_atlas(directory)),
                        ("square_holes.png", plot_square_holes(squares[0], hole_diameter_um, hole_pitch_um)),
                        ("hole_crops.png", plot_crops(directory))):
        save_figure(drawn, out / name, dpi=LOOK_DPI)
        written.append(out / name)
    return written


def look(directory: str | os.PathLike, out: str | os.PathLike | None = None, *, hole_diameter_um: float = 1.0,
         hole_pitch_um: float | None = 2.0, overwrite: bool = False) -> list[Path]:
    """``cryorl look``: :func:`look_at_session` into the folder ``out`` (default ``DIR/look``; replaced as a whole
    only with ``overwrite``); returns the paths of the pictures there."""
    from cryorl.outputs import output_folder

    directory = Path(directory)
    target = Path(out) if out is not None else directory / "look"
    with output_folder(target, overwrite=overwrite, what="pictures", inputs=look_inputs(directory)) as folder:
        paths = look_at_session(directory, folder, hole_diameter_um, hole_pitch_um)
    return [target / Path(path).relative_to(folder) for path in paths]
