"""An Atlas from a session's images: holes found in every patch image, the hierarchy from Leginon file names.

Patch (hole-magnification) images named like ``<tile>_00003sq_v01_00002hl_v01.mrc`` are searched for holes with
:func:`cryorl.images.vision.find_holes`. With a CTF table (the CryoRL CSV: hole name, x and y in patch-image pixels from
the image centre, CTFMaxRes, confidence), each of its holes is matched to the found hole nearest its position in
its patch image; without one, every found hole becomes a hole of the atlas, named in reading order. Each hole gets
its image brightness and — when the dose is known (``session.json`` of a simulated session, or ``dose=``) — an ice
thickness estimate (Beer–Lambert). Predicted CTFMaxRes comes from a predictions file (any hole-quality model), or
else from that ice estimate through the simulator's thickness → CTFMaxRes curve (a physics baseline).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cryorl.atlas import Atlas
from cryorl.images.mrc import read_mrc
from cryorl.images.vision import find_holes
from cryorl.leginon import parse_exposure_names
from cryorl.loaders import DataFileError, read_ctf_csv, read_predictions
from cryorl.synth import ctf_from_thickness

__all__ = ["atlas_from_images", "write_hole_table", "find_patch_holes", "patch_images", "PATCH_IMAGE"]

PATCH_IMAGE = re.compile(r"^(?P<square>(?P<tile>.+?_\d+gr)_\d+sq(?:_v\d+)?)_\d+hl(?:_v\d+)?$")


def patch_images(directory: Path) -> list[Path]:
    """The patch images (Leginon-named MRC files) of a session folder's ``patches/``, or of the folder itself."""
    folder = directory / "patches" if (directory / "patches").is_dir() else directory
    images = sorted(p for p in folder.glob("*.mrc") if PATCH_IMAGE.match(p.stem))
    if not images:
        raise FileNotFoundError(f"no patch images (…_NNNNNsq_vNN_NNNNNhl_vNN.mrc) in {folder}")
    return images


def find_patch_holes(path: str | os.PathLike, hole_diameter_um: float = 1.0, hole_pitch_um: float | None = 2.0,
                     dose: float | None = None) -> pd.DataFrame:
    """Holes found in one patch image, positions as pixels from the image centre (the CryoRL CSV's frame)."""
    image, pixel_angstrom = read_mrc(path)
    if image.ndim != 2:
        raise DataFileError(path, f"a patch image must be 2D, got shape {image.shape}")
    holes = find_holes(image, pixel_angstrom / 1e4, hole_diameter_um, hole_pitch_um=hole_pitch_um,
                       vacuum_counts=dose)
    h, w = image.shape
    holes["x"] -= (w - 1) / 2.0
    holes["y"] -= (h - 1) / 2.0
    return holes


def _session_dose(directory: Path) -> float | None:
    settings = directory / "session.json"
    if settings.exists():
        return float(json.loads(settings.read_text())["magnifications"]["patch"]["dose_electrons_per_pixel"])
    return None


def atlas_from_images(directory: str | os.PathLike, ctf_table: str | os.PathLike | None = None,
                      predictions: str | os.PathLike | None = None, *, hole_diameter_um: float = 1.0,
                      hole_pitch_um: float | None = 2.0, dose: float | None = None,
                      max_distance_px: float | None = None,
                      progress: bool = False) -> tuple[Atlas, pd.DataFrame]:
    """Build an Atlas from the patch images in ``directory`` (or its ``patches/``). ``hole_diameter_um`` and
    ``hole_pitch_um`` describe the grid type (default R1/1: 1 µm holes, 2 µm apart).

    Returns the Atlas (positions in patch-image pixels) and a per-hole table of what the images show
    (``hole, patch, x, y, brightness, ice_nm, detected, distance_px``). Holes of the CTF table that no found hole
    matches within ``max_distance_px`` (default: half a hole radius) raise ``DataFileError`` naming them.
    """
    from tqdm import tqdm

    directory = Path(directory)
    dose = dose if dose is not None else _session_dose(directory)
    found = []
    for path in tqdm(patch_images(directory), desc="finding holes", unit="patch", disable=not progress):
        holes = find_patch_holes(path, hole_diameter_um, hole_pitch_um, dose)
        parts = PATCH_IMAGE.match(path.stem)
        holes.insert(0, "patch", path.stem)
        holes.insert(1, "square", parts["square"])
        holes.insert(2, "tile", parts["tile"])
        found.append(holes.drop(columns=["i", "j"]))
    found = pd.concat(found, ignore_index=True)
    if ctf_table is None:
        number = found.groupby("patch").cumcount() + 1
        found.insert(0, "hole", found["patch"] + "_" + number.map("{:05d}en".format))
        found["true_ctf"] = np.nan
        found["distance_px"] = 0.0
        table = found
    else:
        ctf = read_ctf_csv(ctf_table)
        table = _match(ctf, found, Path(ctf_table), max_distance_px)
    if predictions is not None:
        predicted = read_predictions(predictions).set_index("name")["predicted_ctf"]
        table["predicted_ctf"] = table["hole"].map(predicted)
        unpredicted = table["predicted_ctf"].isna()
        if unpredicted.any():
            raise DataFileError(predictions, f"no prediction for {int(unpredicted.sum())} holes, e.g. "
                                             f"{table['hole'][unpredicted].iloc[0]}")
    elif table["ice_nm"].notna().all():
        table["predicted_ctf"] = ctf_from_thickness(table["ice_nm"].to_numpy())      # image physics
    else:
        raise ValueError("without a predictions file the hole quality is estimated from the ice thickness, "
                         "which needs the dose (counts per pixel through vacuum): pass dose=")
    frame = table[["hole", "tile", "square", "patch", "x", "y", "true_ctf", "predicted_ctf"]]
    groups, parsed = parse_exposure_names(frame["hole"])
    if parsed.all():                       # every version of a target is one square / patch (cryorl.leginon)
        frame = frame.assign(**{level: groups[level].to_numpy() for level in ("tile", "square", "patch")})
    atlas = Atlas.from_frame(frame, position_unit="px", source=str(directory))
    return atlas, table[["hole", "patch", "x", "y", "brightness", "ice_nm", "detected", "distance_px"]]


def _match(ctf: pd.DataFrame, found: pd.DataFrame, path: Path, max_distance_px: float | None) -> pd.DataFrame:
    """Each CTF-table hole → the nearest found hole of its patch image (vectorized per patch)."""
    from scipy.spatial import cKDTree

    parsed, ok = parse_exposure_names(ctf["name"])
    if not ok.all():
        line = int(np.flatnonzero(~ok.to_numpy())[0])
        raise DataFileError(path, f"hole name {ctf['name'].iloc[line]!r} is not a Leginon exposure name", line + 1)
    ctf = ctf.assign(patch=parsed["patch_image"].to_numpy(), square=parsed["square"].to_numpy(),
                     tile=parsed["tile"].to_numpy())
    missing = sorted(set(ctf["patch"]) - set(found["patch"]))
    if missing:
        raise DataFileError(path, f"no patch image for {len(missing)} patches, e.g. {missing[0]}")
    rows = []
    for patch, holes in ctf.groupby("patch", sort=False):
        candidates = found[found["patch"] == patch]
        limit = max_distance_px if max_distance_px is not None else 0.5 * float(candidates["radius"].iloc[0])
        distance, index = cKDTree(candidates[["x", "y"]].to_numpy()).query(holes[["x", "y"]].to_numpy())
        far = distance > limit
        if far.any():
            name = holes["name"].iloc[int(np.argmax(far))]
            raise DataFileError(path, f"no hole found within {limit:.1f} px of {name} in its patch image "
                                      f"({int(far.sum())} such holes in {patch})")
        chosen = candidates.iloc[index].reset_index(drop=True)
        rows.append(pd.DataFrame({"hole": holes["name"].to_numpy(), "tile": holes["tile"].to_numpy(),
                                  "square": holes["square"].to_numpy(), "patch": patch,
                                  "x": chosen["x"], "y": chosen["y"], "true_ctf": holes["ctf_max_res"].to_numpy(),
                                  "brightness": chosen["brightness"], "ice_nm": chosen["ice_nm"],
                                  "detected": chosen["detected"], "distance_px": distance}))
    return pd.concat(rows, ignore_index=True)


def write_hole_table(directory: str | os.PathLike, out: str | os.PathLike, *, ctf: str | os.PathLike | None = None,
                     predictions: str | os.PathLike | None = None, hole_diameter_um: float = 1.0,
                     hole_pitch_um: float | None = 2.0, overwrite: bool = False,
                     progress: bool = True) -> tuple[Atlas, pd.DataFrame]:
    """``cryorl holes``: :func:`atlas_from_images` of a session folder (or a folder of patch images), saved as the
    hole table ``out`` (``.csv`` or ``.parquet``; replaced only with ``overwrite``); returns what it returns."""
    from cryorl.outputs import check_output_file, output_file

    inputs = [directory, ctf, predictions]
    check_output_file(out, overwrite=overwrite, what="hole table", inputs=inputs)
    atlas, images = atlas_from_images(directory, ctf, predictions, hole_diameter_um=hole_diameter_um,
                                      hole_pitch_um=hole_pitch_um, progress=progress)
    with output_file(out, overwrite=overwrite, what="hole table", inputs=inputs) as tmp:
        atlas.save(tmp)
    return atlas, images
