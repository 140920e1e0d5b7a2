"""What made a hole bad: attribution maps of a hole-quality predictor on a held-out simulated grid, cause by cause.

    python benchmarks/explanations.py [--backbone resnet10_small] [--input-size 64] [--epochs 3]
                                      [--train-grids 1 2] [--test-grid 9] [--model FOLDER] [--per-cause 40]
                                      [--rows-per-cause 2] [--out benchmarks/reports/explanations.png]

Trains a predictor on simulated grids (or loads one saved by ``HoleQualityPredictor.save`` with ``--model``),
labels every hole of the held-out grid with its simulated cause (contamination, no ice, thick ice, thin ice with a
poor fit, good: ``cryorl.perception.explain.simulated_cause``), renders up to ``--per-cause`` holes of each cause
with their ice crystals located, and explains each prediction twice: integrated gradients from a good reference
hole (of the 16 training crops predicted best, the median one, so a map reads "what makes this hole worse than a
good one") and Grad-CAM (a late ResNet stage, at least 4 × 4 cells; skipped for backbones without one).

The table, one row per cause: holes; median true and mean predicted CTFMaxRes; how much worse than the reference
the model calls them (the integrated gradients total, Å); the share of what pushed the prediction worse (positive
attribution) that lies inside the hole rather than on the carbon film; and, for contaminated holes, the share on
the ice crystal's core (≥ half its peak thickness). Compare each share with the region's share of the model's view
(last line, and the "crystal core area" column): a share near the area share means the map does not single the
region out. The PNG shows the ``--rows-per-cause`` holes of each cause predicted worst.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryorl.perception.crops import simulated_crop_dataset
from cryorl.perception.explain import (
    CAUSES,
    attributions,
    explanation_grid,
    good_reference,
    hole_mask,
    input_view,
    positive_share,
    render_with_crystals,
    select_holes,
    simulated_cause,
)
from cryorl.perception.predictor import HoleQualityPredictor
from cryorl.synth import simulate_hole_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet10_small")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-grids", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--test-grid", type=int, default=9)
    parser.add_argument("--model", type=Path, default=None, help="a saved predictor folder: explain it, no training")
    parser.add_argument("--per-cause", type=int, default=40, help="held-out holes explained per cause (at most)")
    parser.add_argument("--rows-per-cause", type=int, default=2, help="holes per cause in the PNG")
    parser.add_argument("--steps", type=int, default=32, help="integrated gradients steps")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/reports/explanations.png"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tic = time.perf_counter()
    if args.model is None:
        train_crops, train_table = simulated_crop_dataset(args.train_grids)
        predictor = HoleQualityPredictor(args.backbone, input_size=args.input_size)
        predictor.fit(train_crops, train_table["true_ctf"].to_numpy(), epochs=args.epochs, progress=False)
        trained = f"trained {args.epochs} epochs on grids {args.train_grids} ({len(train_crops)} crops)"
    else:
        predictor = HoleQualityPredictor.load(args.model)
        train_crops, _ = simulated_crop_dataset(args.train_grids[:1])          # only for the good reference
        trained = f"loaded from {args.model}"
    print(f"{predictor.name} at {predictor.config['input_size']} px, {trained}: {time.perf_counter() - tic:.0f} s",
          flush=True)

    table = simulate_hole_table(args.test_grid)
    cause = simulated_cause(table)
    rng = np.random.default_rng(args.test_grid)
    rows = np.sort(np.concatenate([rng.choice(np.flatnonzero(cause == c), min(args.per_cause, (cause == c).sum()),
                                              replace=False) for c in CAUSES]))
    crops, crystal_nm = render_with_crystals(table, args.test_grid, rows)
    cause, truth, names = cause[rows], table["true_ctf"].to_numpy()[rows], table["hole"].to_numpy()[rows]

    tic = time.perf_counter()
    predicted = predictor.predict(crops)
    reference = good_reference(predictor, train_crops)
    print(f"good reference hole: predicted {predictor.predict(reference[None])[0]:.1f} Å")
    maps = {"IG": attributions(predictor, crops, baseline=reference, steps=args.steps)}
    try:
        maps["Grad-CAM"] = attributions(predictor, crops, "gradcam")
    except ValueError as error:
        print(f"no Grad-CAM: {error}")
    hole = hole_mask(predictor)
    crystal = input_view(predictor, crystal_nm)
    core = (crystal >= 0.5 * crystal_nm.max(axis=(1, 2))[:, None, None]) & (crystal > 0)

    summary = []
    for c in CAUSES:
        of = cause == c
        row = {"cause": c, "holes": int(of.sum()),
               "true CTF (Å, median)": float(np.median(np.minimum(truth[of], 20.0))),
               "predicted (Å, mean)": float(predicted[of].mean()),
               "worse than good ref (IG total, Å)": float(maps["IG"][of].sum(axis=(1, 2)).mean())}
        for method, m in maps.items():
            row[f"{method}+ in hole"] = float(np.nanmean(positive_share(m[of], hole)))
        for method, m in maps.items():
            row[f"{method}+ on crystal core"] = (float(np.nanmean(positive_share(m[of], core[of])))
                                                 if c == "contamination" else np.nan)
        row["crystal core area"] = float(core[of].mean()) if c == "contamination" else np.nan
        summary.append(row)
    summary = pd.DataFrame(summary)

    pick = select_holes(predicted, cause, per_cause=args.rows_per_cause)
    path = explanation_grid(predictor, crops[pick], args.out, names=list(names[pick]), truth=truth[pick],
                            causes=list(cause[pick]), baseline=reference, steps=args.steps)
    print(f"explained {len(crops)} held-out holes of grid {args.test_grid} in {time.perf_counter() - tic:.0f} s; "
          f"grid of {len(pick)} holes: {path}\n")
    shares = [col for col in summary.columns if "+" in col or "area" in col]
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.1f}", na_rep="—",
                            formatters={col: (lambda v: "—" if np.isnan(v) else f"{100 * v:.0f} %") for col in shares}))
    print(f"\nthe hole is {100 * hole.mean():.0f} % of the model's {predictor.config['input_size']}-pixel view, the "
          "carbon film the rest; X+ = share of the positive attribution (what made the prediction worse)")


if __name__ == "__main__":
    main()
