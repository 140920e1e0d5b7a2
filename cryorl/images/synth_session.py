"""A simulated session on disk: MRC images at three magnifications, the hole table, CryoRL-format files, a trace.

The images come from the same seeded sample model as :func:`cryorl.synth.simulate_atlas` (same seed, same holes,
thickness and CTFMaxRes). Layout: every square is a 65 µm opening of a square lattice of holes (R1/1: 1 µm holes,
2 µm pitch); each patch is a block of up to 5 × 5 lattice positions inside it, its targeted holes at the positions
the hole table gives (µm from the patch centre); untargeted lattice holes get ice from a smooth fit of their
square's thickness. Each atlas tile is a 4 × 4 block of mesh cells holding its squares among untargeted ones.

Written by :func:`simulate_session` (``cryorl simulate``)::

    DIR/atlas/<tile>.mrc            grid magnification, ≈ 1 µm/pixel
    DIR/squares/<square>.mrc        ≈ 0.1 µm/pixel
    DIR/patches/<patch>.mrc         hole magnification, ≈ 20 nm/pixel
    DIR/crops/<patch>.mrc           (``crops=True``) 150 × 150 crops of its targeted holes, in exposure order
    DIR/holes.csv                   every targeted hole: names, positions (in its patch image, its square and
                                    on the stage), thickness, true and predicted CTF
    DIR/target_CTF_Y1_<split>.csv   CryoRL CTF file (patch-image pixels from the patch centre, CTFMaxRes, fit
                                    confidence)
    DIR/Y1_2_regress_8bit_res50_<split>_by_hl.txt   predicted CTFMaxRes per hole
    DIR/timestamps.csv              a simulated systematic operator's collection (Leginon timestamps)
    DIR/session.json                seed, grid spec, optics, magnifications

so ``cryorl.load_grid(DIR)`` reads it like a downloaded real split. Files are written
atomically; a progress bar runs over squares.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from cryorl.fileio import atomic_path, atomic_write_text
from cryorl.images.imaging import (
    ATLAS_MAG,
    PATCH_MAG,
    SQUARE_MAG,
    Defects,
    Magnification,
    Optics,
    cut_crops,
    lattice_points,
    render_atlas_tile,
    render_patch_image,
    render_square_image,
    transmission,
)
from cryorl.images.mrc import write_mrc
from cryorl.loaders import TIMESTAMPS_FILE, dataset_file
from cryorl.synth import FIT_FAILURE_SENTINEL, GridSpec, simulate_hole_table

__all__ = ["simulate_session", "session_layout", "square_stage_centres", "TILE_CELLS", "CROPS_DIR"]

CROPS_DIR = "crops"            # a session's hole crops: CROPS_DIR/<patch>.mrc, one image per targeted hole
TILE_CELLS = 4                 # an atlas tile shows 4 × 4 mesh cells
BLOCK = 5                      # a patch is at most 5 × 5 lattice positions


def _patch_slots(n: int, pitch_um: float, opening_um: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` block centres (µm from the square centre, on lattice points) that keep blocks apart and inside."""
    for step in (BLOCK + 1, BLOCK):
        reach = int((opening_um / 2 - (BLOCK / 2 + 0.5) * pitch_um) // (step * pitch_um))
        k = np.arange(-reach, reach + 1) * step
        slots = np.array([(i, j) for i in k for j in k], dtype=float) * pitch_um
        if len(slots) >= n:
            return slots[rng.choice(len(slots), n, replace=False)]
    raise ValueError(f"{n} patches do not fit in one square")


def _lattice_index(lattice: np.ndarray, points: np.ndarray, pitch: float) -> np.ndarray:
    """Index into ``lattice`` of each of ``points`` (both on the same lattice, µm), by sorted integer keys."""
    def keys(xy: np.ndarray) -> np.ndarray:
        k = np.round(xy / pitch * 2).astype(np.int64) + 100_000
        return k[:, 0] * 1_000_000 + k[:, 1]

    lattice_keys, point_keys = keys(lattice), keys(points)
    order = np.argsort(lattice_keys)
    found = order[np.searchsorted(lattice_keys[order], point_keys).clip(0, len(order) - 1)]
    if not np.array_equal(lattice_keys[found], point_keys):
        raise ValueError("a targeted hole is off the square's lattice")
    return found


def session_layout(table: pd.DataFrame, spec: GridSpec, optics: Optics, rng: np.random.Generator) -> dict:
    """Stage geometry of every square (lattice holes with thickness, patch centres, defects) and tile."""
    pitch = spec.hole_spacing_um
    squares = {}
    for square, holes in table.groupby("square", sort=False):
        counts = holes.groupby("patch", sort=False).size()
        side = np.ceil(np.sqrt(counts.to_numpy()) - 1e-9)
        shift = np.where(side % 2 == 0, pitch / 2, 0.0)                   # even blocks sit between lattice points
        centres = _patch_slots(len(counts), pitch, optics.opening_um, rng) + shift[:, None]
        patch_centre = dict(zip(counts.index, map(tuple, centres)))
        target_xy = np.array([patch_centre[p] for p in holes["patch"]]) + holes[["x", "y"]].to_numpy()
        lattice = lattice_points("square", pitch, optics.opening_um / 2 + optics.hole_radius_um)
        # untargeted holes: a smooth (planar) fit of the square's ice, plus hole-to-hole variation
        t = holes["thickness_nm"].to_numpy()
        design = np.column_stack([np.ones(len(t)), target_xy])
        coef = np.linalg.lstsq(design, t, rcond=None)[0] if len(t) >= 6 else np.array([t.mean(), 0.0, 0.0])
        ice = np.column_stack([np.ones(len(lattice)), lattice]) @ coef
        ice = np.clip(ice + rng.normal(0.0, spec.hole_thickness_sd_nm * (0.2 if t.mean() < 15 else 1.0),
                                       len(lattice)), 0.0, None)
        targeted = _lattice_index(lattice, target_xy, pitch)
        ice[targeted] = t
        failed = holes["true_ctf"].to_numpy() >= FIT_FAILURE_SENTINEL
        defects = Defects.random(rng, optics.opening_um / 2, rng.poisson(3), int(rng.random() < 0.15))
        on_failed = np.column_stack([target_xy[failed], rng.uniform(0.4, 0.8, failed.sum()),
                                     rng.uniform(150.0, 300.0, failed.sum())])
        defects = Defects(np.vstack([defects.blobs, on_failed]), defects.cracks)
        film_ice = optics.ice_on_carbon_ratio * float(np.median(t))
        hole_fraction = np.pi * optics.hole_radius_um ** 2 / pitch ** 2
        mean_t = hole_fraction * transmission(ice, optics).mean() + (1 - hole_fraction) * float(
            transmission(optics.carbon_nm * optics.carbon_density_ratio + film_ice, optics))
        squares[square] = {"lattice": lattice, "ice": ice, "targeted": targeted, "target_xy": target_xy,
                           "patch_centre": patch_centre,
                           "defects": defects, "film_ice": film_ice, "transmission": mean_t,
                           "tile": holes["tile"].iloc[0]}
    tiles = {}
    for tile in dict.fromkeys(table["tile"]):
        members = [s for s, v in squares.items() if v["tile"] == tile]
        cells = rng.choice(TILE_CELLS * TILE_CELLS, len(members), replace=False)
        others = np.clip(rng.normal(0.55, 0.15, (TILE_CELLS, TILE_CELLS)), 0.02, 0.95)
        others[rng.random((TILE_CELLS, TILE_CELLS)) < 0.05] = np.nan          # torn film: fully bright
        others[rng.random((TILE_CELLS, TILE_CELLS)) < 0.10] = 0.02            # covered: dark
        for square, cell in zip(members, cells):
            others.flat[cell] = squares[square]["transmission"]
            squares[square]["cell"] = (int(cell // TILE_CELLS), int(cell % TILE_CELLS))
        tiles[tile] = others
    return {"squares": squares, "tiles": tiles}


def square_stage_centres(layout: dict, optics: Optics) -> dict[str, np.ndarray]:
    """Stage position (µm, grid centre at 0) of every square's centre: atlas tiles side by side in rows (in order
    of appearance), each ``TILE_CELLS`` × ``TILE_CELLS`` mesh cells, a square in its cell of its tile."""
    tiles = list(layout["tiles"])
    per_row = int(np.ceil(np.sqrt(len(tiles))))
    side = TILE_CELLS * optics.mesh_pitch_um
    middle = np.array([per_row, np.ceil(len(tiles) / per_row)]) * side / 2.0
    centres = {}
    for square, geo in layout["squares"].items():
        index = tiles.index(geo["tile"])
        row, column = geo["cell"]
        origin = np.array([index % per_row, index // per_row]) * side
        centres[square] = origin + (np.array([column, row]) + 0.5) * optics.mesh_pitch_um - middle
    return centres


def simulate_session(out: str | os.PathLike, seed: int = 0, spec: GridSpec | None = None, *, crops: bool = False,
                     split: str = "all", optics: Optics = Optics(), progress: bool = True, session: str = "sim",
                     square_mag: Magnification = SQUARE_MAG, patch_mag: Magnification = PATCH_MAG) -> Path:
    """Write a simulated session (module docstring) into ``out``; returns ``out``. Deterministic by ``seed``.
    ``square_mag`` / ``patch_mag`` change pixel sizes and image shapes (smaller files for samples)."""
    from tqdm import tqdm

    out = Path(out)
    spec = spec or GridSpec()
    table = simulate_hole_table(seed, spec, session=session)
    rng = np.random.default_rng([seed, 2023])                 # images draw from their own stream
    layout = session_layout(table, spec, optics, rng)
    rows = []
    centres = square_stage_centres(layout, optics)
    for square, geo in tqdm(layout["squares"].items(), desc="simulating squares", unit="square",
                            disable=not progress):
        image = render_square_image(geo["lattice"], geo["ice"], geo["film_ice"], rng, optics, square_mag,
                                    geo["defects"])
        write_mrc(out / "squares" / f"{square}.mrc", image, square_mag.pixel_angstrom)
        holes = table[table["square"] == square]
        for patch, centre in geo["patch_centre"].items():
            image = render_patch_image(geo["lattice"], geo["ice"], geo["film_ice"], rng, centre, optics,
                                       patch_mag, geo["defects"])
            write_mrc(out / "patches" / f"{patch}.mrc", image, patch_mag.pixel_angstrom)
            mine = (holes["patch"] == patch).to_numpy()
            xy = geo["target_xy"][mine]
            px = (xy - np.asarray(centre)) / patch_mag.pixel_um                # pixels from the patch centre
            stage = xy + centres[square]
            rows.append(pd.DataFrame({"hole": holes["hole"].to_numpy()[mine], "patch_px_x": px[:, 0],
                                      "patch_px_y": px[:, 1], "square_x_um": xy[:, 0], "square_y_um": xy[:, 1],
                                      "stage_x_um": stage[:, 0], "stage_y_um": stage[:, 1]}))
            if crops:
                h, w = patch_mag.shape
                stack = cut_crops(image, px + np.array([(w - 1) / 2, (h - 1) / 2]))
                write_mrc(out / CROPS_DIR / f"{patch}.mrc", stack, patch_mag.pixel_angstrom)
    for tile, cells in layout["tiles"].items():
        write_mrc(out / "atlas" / f"{tile}.mrc", render_atlas_tile(cells, rng, optics, ATLAS_MAG),
                  ATLAS_MAG.pixel_angstrom)

    positions = pd.concat(rows, ignore_index=True)
    holes = table.merge(positions, on="hole", how="left", validate="one_to_one")
    failed = holes["true_ctf"] >= FIT_FAILURE_SENTINEL
    confidence = np.clip(1.0 - np.minimum(holes["true_ctf"], 30.0) / 30.0 + rng.normal(0, 0.05, len(holes)),
                         0.05, 0.99)
    holes["ctf_confidence"] = np.where(failed, 0.05, confidence)
    with atomic_path(out / "holes.csv") as tmp:
        holes.to_csv(tmp, index=False, float_format="%.6g")
    ctf = holes[["hole", "patch_px_x", "patch_px_y", "true_ctf", "ctf_confidence"]]
    with atomic_path(out / dataset_file("2023", "ctf", split)) as tmp:
        ctf.to_csv(tmp, index=False, header=False, float_format="%.6g")
    atomic_write_text(out / dataset_file("2023", "predictions", split),
                      "".join(f"{n} {v:.2f}\n" for n, v in zip(holes["hole"], holes["predicted_ctf"])))
    _write_trace(out, holes, seed)
    settings = {"seed": seed, "split": split, "session": session, "grid": asdict(spec), "optics": asdict(optics),
                "magnifications": {m.name: {"pixel_angstrom": m.pixel_angstrom, "shape": list(m.shape),
                                            "dose_electrons_per_pixel": m.dose}
                                   for m in (ATLAS_MAG, square_mag, patch_mag)},
                "lattice": "square", "tile_cells": TILE_CELLS, "crops": crops}
    atomic_write_text(out / "session.json", json.dumps(settings, indent=2) + "\n")
    return out


def _write_trace(out: Path, holes: pd.DataFrame, seed: int) -> None:
    """``timestamps.csv`` of a simulated systematic operator: each exposure, and each atlas tile, square and patch
    image just before its first exposure (Leginon names; raw exposure names without the ``-a`` suffix)."""
    from cryorl.atlas import Atlas
    from cryorl.human import simulate_operator

    atlas = Atlas.from_frame(holes[["hole", "tile", "square", "patch", "x", "y", "true_ctf", "predicted_ctf"]],
                             position_unit="um")
    square_names, patch_names = np.asarray(atlas.square_names), np.asarray(atlas.patch_names)
    trace = simulate_operator(atlas, seed, costs="aldolase-timestamps", name="simulated operator")
    order = trace.on(atlas)
    start = pd.Timestamp("2026-01-05 09:00:00")
    when = start + pd.to_timedelta(order["minutes"].to_numpy() + 30.0, unit="min")      # 30 min of survey first
    names = pd.Series(atlas.names[order["hole"].to_numpy()]).str.replace(r"-a$", "", regex=True)
    stamps = [pd.DataFrame({"name": list(atlas.tile_names), "time": start})]
    first = pd.DataFrame({"square": square_names[atlas.square[order["hole"]]],
                          "patch": patch_names[atlas.patch[order["hole"]]], "time": when})
    for level, lead in (("square", 2.0), ("patch", 1.0)):
        seen = first.drop_duplicates(level)
        stamps.append(pd.DataFrame({"name": seen[level], "time": seen["time"] - pd.Timedelta(minutes=lead)}))
    stamps.append(pd.DataFrame({"name": names, "time": when}))
    frame = pd.concat(stamps, ignore_index=True).sort_values("time", kind="stable")
    frame["time"] = frame["time"].dt.strftime("%Y-%m-%d %H:%M:%S")
    with atomic_path(out / TIMESTAMPS_FILE) as tmp:
        frame.to_csv(tmp, index=False, header=False)

