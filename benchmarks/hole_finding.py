"""Hole finding on simulated squares with known holes: precision and recall by lattice and image condition.

    python benchmarks/hole_finding.py [--seeds 10]

Each case renders full squares (65 µm opening, R1/1 holes, 0.1 µm/pixel, 800 × 800) with random lattice rotation
and offset and ice 0-200 nm; a found hole matches a true one when its centre is within 10 % of the hole radius
(0.5 pixel); true holes are those wholly inside the opening. Conditions: clean (120 e/pixel), noisy (20 e/pixel),
contaminated (12 ice crystals and 2 cracks per square, 120 e/pixel).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from cryorl.images.imaging import SQUARE_MAG, Defects, Magnification, Optics, lattice_points, render_square_image
from cryorl.images.vision import find_holes, match_holes

CONDITIONS = {"clean": (120.0, 0, 0), "noisy": (20.0, 0, 0), "contaminated": (120.0, 12, 2)}


def run_case(lattice: str, condition: str, seed: int, optics: Optics = Optics()) -> dict:
    dose, blobs, cracks = CONDITIONS[condition]
    mag = Magnification("square", SQUARE_MAG.pixel_um, SQUARE_MAG.shape, dose)
    rng = np.random.default_rng(seed)
    truth = lattice_points(lattice, optics.hole_pitch_um, optics.opening_um / 2 + optics.hole_radius_um,
                           rotation=rng.uniform(-np.pi / 6, np.pi / 6), offset=rng.uniform(-1.0, 1.0, 2))
    ice = np.clip(rng.gamma(3.0, 25.0, len(truth)), 0.0, 250.0)
    defects = Defects.random(rng, optics.opening_um / 2, blobs, cracks)
    image = render_square_image(truth, ice, 0.4 * float(np.median(ice)), rng, optics, mag, defects)
    tic = time.perf_counter()
    holes = find_holes(image, mag.pixel_um, optics.hole_diameter_um)
    seconds = time.perf_counter() - tic
    whole = np.all(np.abs(truth) <= optics.opening_um / 2 - optics.hole_radius_um, axis=1)
    centre = (np.array(mag.shape[::-1]) - 1) / 2
    radius = optics.hole_radius_um / mag.pixel_um
    precision, recall, matched = match_holes(holes[["x", "y"]].to_numpy(), truth[whole] / mag.pixel_um + centre,
                                             0.1 * radius)
    found = holes[["x", "y"]].to_numpy()[matched[matched >= 0]]
    error = np.linalg.norm(found - (truth[whole] / mag.pixel_um + centre)[matched >= 0], axis=1)
    return {"lattice": lattice, "condition": condition, "seed": seed, "true holes": int(whole.sum()),
            "found": len(holes), "precision": precision, "recall": recall,
            "centre error (px)": float(np.median(error)) if len(error) else np.nan,
            "seen directly": float(holes["detected"].mean()), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    rows = [run_case(lattice, condition, seed) for lattice in ("square", "hexagonal") for condition in CONDITIONS
            for seed in range(args.seeds)]
    frame = pd.DataFrame(rows)
    table = frame.groupby(["lattice", "condition"], sort=False).agg(
        squares=("seed", "size"), true_holes=("true holes", "mean"), precision_mean=("precision", "mean"),
        precision_min=("precision", "min"), recall_mean=("recall", "mean"), recall_min=("recall", "min"),
        centre_error_px=("centre error (px)", "median"), seen_directly=("seen directly", "mean"),
        seconds=("seconds", "median"))
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
