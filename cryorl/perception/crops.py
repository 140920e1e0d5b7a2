"""Hole crops for perception: rendered from the sample model (fast, any number), or read from a session folder.

Two layouts are read (:func:`load_crops`): ``cryorl simulate``'s ``crops/<patch>.mrc`` stacks (frame k = exposure
k + 1 of the patch), and a folder with one image per hole as the CryoRL authors published theirs
(``<hole name>_crop.png``; also ``.tif``/``.tiff`` and single-image ``.mrc``, 8- or 16-bit or float; a name without
the ``_crop`` suffix is the hole name itself).

``render_hole_crops`` draws 150 × 150 hole-magnification crops (20 nm/pixel) centred on each hole with the same
image physics as :mod:`cryorl.images.imaging` — Beer–Lambert transmission of the hole's ice, its neighbours on the
lattice, the carbon film with its texture and the holes' carbon lips, ice-crystal contamination on holes whose CTF
fit failed, Poisson shot noise — vectorized over crops.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from cryorl.images.imaging import CROP_SIZE, Optics, lattice_points, splat_holes
from cryorl.images.synth_session import CROPS_DIR
from cryorl.synth import FIT_FAILURE_SENTINEL, GridSpec, simulate_hole_table

__all__ = ["render_hole_crops", "crops_for_table", "simulated_crop_dataset", "load_session_crops", "movie_frames",
           "CROP_PIXEL_UM", "load_crops", "load_crop_folder", "HOLE_IMAGE_SUFFIXES"]

HOLE_IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".mrc")
"""Image files of a one-crop-per-hole folder."""

CROP_PIXEL_UM = 0.02


def render_hole_crops(thickness_nm: np.ndarray, film_ice_nm: np.ndarray, contaminated: np.ndarray,
                      rng: np.random.Generator, optics: Optics = Optics(), size: int = CROP_SIZE,
                      pixel_um: float = CROP_PIXEL_UM, dose: float = 400.0, chunk: int = 512) -> np.ndarray:
    """(N, size, size) int16 crops, one per hole (thickness, ice over the film, contamination flag)."""
    thickness_nm = np.asarray(thickness_nm, dtype=np.float64)
    n = len(thickness_nm)
    for name, values in (("film_ice_nm", film_ice_nm), ("contaminated", contaminated)):
        if np.shape(values) != (n,):
            raise ValueError(f"{name} has shape {np.shape(values)}; expected ({n},), one value per hole")
    centre_px = np.array([[(size - 1) / 2, (size - 1) / 2]])
    radius_px = optics.hole_radius_um / pixel_um
    rim_px = optics.rim_width_um / pixel_um
    centre, _, centre_rim = splat_holes((size, size), centre_px, radius_px, np.ones(1), rim_px)
    neighbours = lattice_points("square", optics.hole_pitch_um, size * pixel_um)
    neighbours = neighbours[np.linalg.norm(neighbours, axis=1) > 1e-6] / pixel_um + centre_px
    around, _, around_rim = splat_holes((size, size), neighbours, radius_px, np.ones(len(neighbours)), rim_px)
    y, x = np.mgrid[0:size, 0:size] * pixel_um
    out = np.empty((n, size, size), dtype=np.int16)
    carbon = optics.carbon_nm * optics.carbon_density_ratio
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        k = stop - start
        t = thickness_nm[start:stop, None, None]
        t_near = np.clip(t + rng.normal(0.0, 10.0, (k, 1, 1)), 0.0, None)
        texture = ndimage.gaussian_filter(rng.normal(size=(k, size, size)), (0, 15, 15), mode="wrap")
        texture /= texture.std(axis=(1, 2), keepdims=True) + 1e-12
        film = (carbon * (1.0 + 0.08 * texture) + np.asarray(film_ice_nm)[start:stop, None, None]
                + optics.rim_nm * np.maximum(centre_rim, around_rim))
        total = centre * t + around * t_near + (1.0 - centre - around) * film
        dirty = np.flatnonzero(np.asarray(contaminated)[start:stop])
        if dirty.size:                                  # an ice crystal near the hole's centre
            cx = rng.uniform(0.3, 0.7, dirty.size) * size * pixel_um
            cy = rng.uniform(0.3, 0.7, dirty.size) * size * pixel_um
            width = rng.uniform(0.3, 0.8, dirty.size)[:, None, None]
            total[dirty] += rng.uniform(150, 300, dirty.size)[:, None, None] * np.exp(
                -((x - cx[:, None, None]) ** 2 + (y - cy[:, None, None]) ** 2) / (2 * width ** 2))
        out[start:stop] = np.minimum(rng.poisson(dose * np.exp(-total / optics.mean_free_path_nm)),
                                     np.iinfo(np.int16).max)
    return out


def crops_for_table(table: pd.DataFrame, seed: int | np.random.Generator, optics: Optics = Optics()) -> np.ndarray:
    """Crops for every hole of a simulated hole table (``thickness_nm``, ``square``, ``true_ctf``)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng([seed, 150])
    film = optics.ice_on_carbon_ratio * table.groupby("square")["thickness_nm"].transform("median").to_numpy()
    failed = table["true_ctf"].to_numpy() >= FIT_FAILURE_SENTINEL
    return render_hole_crops(table["thickness_nm"].to_numpy(), film, failed, rng, optics)


def simulated_crop_dataset(seeds, spec: GridSpec | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Crops and hole tables of the simulated grids of ``seeds`` (concatenated in order)."""
    crops, tables = [], []
    for seed in seeds:
        table = simulate_hole_table(seed, spec)
        crops.append(crops_for_table(table, seed))
        tables.append(table.assign(grid_seed=seed))
    return np.concatenate(crops), pd.concat(tables, ignore_index=True)


def movie_frames(crops: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Split each crop's electrons over ``frames`` movie frames (each electron lands in one frame, uniformly):
    (N, H, W) counts → (N, frames, H, W), the shot noise of a dose-fractionated exposure."""
    remaining = np.asarray(crops).astype(np.int64)
    out = np.empty((len(remaining), frames) + remaining.shape[1:], dtype=np.int16)
    for k in range(frames - 1):                                   # sequential binomial = multinomial split
        taken = rng.binomial(remaining, 1.0 / (frames - k))
        out[:, k] = taken
        remaining = remaining - taken
    out[:, -1] = remaining
    return out


def load_session_crops(directory: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Hole names and crops from a session's ``crops/<patch>.mrc`` stacks (frame k = exposure k + 1), in the
    order of the stacks' file names."""
    from cryorl.images.mrc import read_mrc

    folder = Path(directory) / CROPS_DIR
    stacks = sorted(folder.glob("*.mrc"))
    if not stacks:
        raise FileNotFoundError(f"no hole crops (crops/*.mrc) in {directory}; `cryorl simulate --crops` writes them")
    names, crops = [], []
    for path in stacks:
        stack, _ = read_mrc(path)
        stack = stack if stack.ndim == 3 else stack[None]
        names += [f"{path.stem}_{k + 1:05d}en-a" for k in range(len(stack))]
        crops.append(stack)
    return names, np.concatenate(crops)


def _per_hole_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in HOLE_IMAGE_SUFFIXES
                  and (p.stem.endswith("_crop") or p.suffix.lower() != ".mrc"))


def load_crop_folder(folder: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Hole names and crops from a folder of one image per hole (``<hole>_crop.png`` etc., module docstring), in
    file-name order. Every image must be 2-D (a single-frame stack is taken as its frame) and of one shape; 8- and
    16-bit images keep their values (the predictor normalises each crop)."""
    from skimage.io import imread

    from cryorl.images.mrc import read_mrc
    from cryorl.loaders import DataFileError

    folder = Path(folder)
    paths = _per_hole_images(folder)
    if not paths:
        raise FileNotFoundError(f"no hole images ({', '.join('*_crop' + s for s in HOLE_IMAGE_SUFFIXES)}) in "
                                f"{folder}")
    names, images = [], []
    for path in paths:
        try:
            image = read_mrc(path)[0] if path.suffix.lower() == ".mrc" else imread(path)
        except (OSError, ValueError) as error:
            raise DataFileError(path, f"not a readable image ({' '.join(str(error).split())[:200]})") from None
        image = np.squeeze(np.asarray(image))
        if image.ndim == 3 and image.shape[-1] in (3, 4):       # an RGB(A) export of a grey image
            image = image[..., :3].mean(axis=-1)
        if image.ndim != 2:
            raise DataFileError(path, f"a hole crop is one 2-D image, this one has shape {image.shape}")
        if images and image.shape != images[0].shape:
            raise DataFileError(path, f"shape {image.shape} differs from the folder's {images[0].shape} "
                                      f"({paths[0].name})")
        name = path.stem[:-len("_crop")] if path.stem.endswith("_crop") else path.stem
        names.append(name)
        images.append(image.astype(np.float32, copy=False))
    return names, np.stack(images)


def load_crops(folder: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Hole names and crops from either layout (module docstring): per-patch stacks or one image per hole."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no crop folder {folder}")
    if _per_hole_images(folder):
        return load_crop_folder(folder)
    return load_session_crops(folder.parent if folder.name == CROPS_DIR else folder)
