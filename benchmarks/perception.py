"""Hole-quality predictors on simulated crops: each backbone family against what the image allows.

    python benchmarks/perception.py [--families resnet blnet crossvit regionvit graft temporal] [--epochs 4]
                                    [--train-grids 1 2 3] [--out benchmarks/reports/perception.csv]

Training crops come from simulated grids (2,341 holes each), validation from grid 8, the test from grid 9 (never
seen). References: the *achievable* (the simulator's own CTFMaxRes curve applied to the hole's true ice
thickness — what a perfect reading of the image could give), the simulator's built-in image model, and the real
ResNet-50's published figures on real validation data (MAE 2.55 Å, r 0.63, 89 % accuracy at 6 Å). Training
time per epoch and inference crops/s are on this machine (torch threads: --threads).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryorl.fileio import atomic_path
from cryorl.perception import count_macs, count_parameters
from cryorl.perception.crops import movie_frames, simulated_crop_dataset
from cryorl.perception.predictor import HoleQualityPredictor, quality_metrics
from cryorl.synth import ctf_from_thickness

VARIANTS = {"resnet": "resnet10_small", "blnet": "bl_resnet_small", "crossvit": "crossvit_tiny",
            "regionvit": "regionvit_small_cpu", "graft": "graft_small_cpu", "temporal": "superimage_resnet10_small"}
FRAMES = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-grids", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train_x, train = simulated_crop_dataset(args.train_grids)
    val_x, val = simulated_crop_dataset([8])
    test_x, test = simulated_crop_dataset([9])
    rows = [{"model": "achievable (true ice thickness)", **quality_metrics(
                np.minimum(ctf_from_thickness(test["thickness_nm"]), 20.0), test["true_ctf"])},
            {"model": "simulator's image model", **quality_metrics(np.minimum(test["predicted_ctf"], 20.0),
                                                                     test["true_ctf"])},
            {"model": "ResNet-50, real data (published)", "mae": 2.55, "pearson_r": 0.63, "accuracy": 0.89}]
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    rng = np.random.default_rng(0)
    for family in args.families:
        name = VARIANTS[family]
        predictor = HoleQualityPredictor(name, input_size=args.input_size)
        movies = predictor.movies
        data = [(movie_frames(x, FRAMES, rng) if movies else x) for x in (train_x, val_x, test_x)]
        history = predictor.fit(data[0], train["true_ctf"].to_numpy(), validation=(data[1], val["true_ctf"]),
                                epochs=args.epochs, progress=False)
        predictor.predict(data[2][:256])                                       # warm-up
        tic = time.perf_counter()
        predicted = predictor.predict(data[2])
        rate = len(predicted) / (time.perf_counter() - tic)
        shape = (FRAMES, 1, args.input_size, args.input_size) if movies else (1, args.input_size, args.input_size)
        row = {"model": name, "family": family, **quality_metrics(predicted, test["true_ctf"]),
               "params (M)": count_parameters(predictor.model) / 1e6,
               "GMACs": count_macs(predictor.model, shape) / 1e9,
               "s/epoch": float(history["seconds"].mean()), "crops/s": rate}
        rows.append(row)
        print(pd.DataFrame([row]).to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    table = pd.DataFrame(rows)
    print(f"\ntrain {len(train)} crops ({args.train_grids}), {args.epochs} epochs, input {args.input_size} px; "
          f"test: grid 9 ({len(test)} holes)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False, float_format="%.4f")


if __name__ == "__main__":
    main()
