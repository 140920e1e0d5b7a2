"""Hole-quality models from few labelled holes: supervised-only against FixMatch, with the default and a learned
strong-augmentation policy, per fraction of labelled holes.

    python benchmarks/semi_supervised.py [--backbone resnet10_small] [--input-size 48] [--steps 600]
        [--fractions 0.05 0.1 0.25 1] [--train-grids 1 2] [--test-grids 9] [--search-fraction 0.1]
        [--policy-trials 8] [--search-steps 100] [--policy JSON] [--out benchmarks/reports/semi_supervised.csv]

For each fraction, that share of the training grids' holes keeps its CTFMaxRes (a seeded draw, the same for
every method); a fifth of those is held out to pick the best epoch (and, for the search, to score policies), the
rest train. The other holes are the unlabelled pool of FixMatch. Every run takes the same number of optimizer
steps (``--steps``, each with a batch of 32 labelled crops) and CTF-bin targets (``target="bins"``), so only the
unlabelled crops differ. The policy is searched once, at ``--search-fraction``, and reused at every fraction
(``--policy '{"blur": 0.25, ...}'``: take that one instead of searching).
Metrics are on the test grids' crops, which no run sees.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryorl.fileio import atomic_path
from cryorl.perception.augment import AugmentPolicy
from cryorl.perception.crops import simulated_crop_dataset
from cryorl.perception.predictor import HoleQualityPredictor
from cryorl.perception.semi import FixMatch, search_policy

BATCH = 32


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the training, validation (both labelled) and unlabelled holes."""
    rng = np.random.default_rng(seed)
    labelled = rng.random(n) < fraction if fraction < 1 else np.ones(n, bool)
    held = rng.random(n) < 0.2
    return np.flatnonzero(labelled & ~held), np.flatnonzero(labelled & held), np.flatnonzero(~labelled)


def epochs_for(steps: int, crops: int) -> int:
    return max(1, math.ceil(steps / math.ceil(crops / BATCH)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet10_small")
    parser.add_argument("--input-size", type=int, default=48)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.25, 1.0])
    parser.add_argument("--train-grids", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--test-grids", type=int, nargs="+", default=[9])
    parser.add_argument("--search-fraction", type=float, default=0.1)
    parser.add_argument("--policy-trials", type=int, default=8)
    parser.add_argument("--search-steps", type=int, default=100, help="steps of the search's first round")
    parser.add_argument("--policy", default=None, help="a learned policy's magnitudes as JSON: skip the search")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/reports/semi_supervised.csv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    crops, table = simulated_crop_dataset(args.train_grids)
    ctf = table["true_ctf"].to_numpy()
    test_crops, test_table = simulated_crop_dataset(args.test_grids)
    test_ctf = test_table["true_ctf"].to_numpy()

    def make_predictor() -> HoleQualityPredictor:
        torch.manual_seed(args.seed)
        return HoleQualityPredictor(args.backbone, target="bins", input_size=args.input_size)

    if args.policy is not None:
        learned, search_seconds = AugmentPolicy.from_dict({"magnitudes": json.loads(args.policy),
                                                           "ops_per_crop": 2}), 0.0
    else:
        train, val, pool = split(len(crops), args.search_fraction, args.seed)
        tic = time.perf_counter()
        learned, trials = search_policy(make_predictor, crops[train], ctf[train], crops[pool],
                                        (crops[val], ctf[val]), candidates=args.policy_trials,
                                        epochs=epochs_for(args.search_steps, len(train)), seed=args.seed,
                                        batch_size=BATCH)
        search_seconds = time.perf_counter() - tic
        print(trials.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"learned policy {learned.describe()} in {search_seconds:.0f} s\n", flush=True)

    methods = {"supervised only": None, "FixMatch, default policy": FixMatch(),
               "FixMatch, learned policy": FixMatch(policy=learned)}
    rows = []
    for fraction in args.fractions:
        train, val, pool = split(len(crops), fraction, args.seed)
        for name, method in methods.items():
            if method is not None and len(pool) == 0:
                continue
            predictor = make_predictor()
            tic = time.perf_counter()
            predictor.fit(crops[train], ctf[train], validation=(crops[val], ctf[val]), batch_size=BATCH,
                          epochs=epochs_for(args.steps, len(train)), seed=args.seed, progress=False, semi=method,
                          unlabelled=crops[pool] if method is not None else None)
            metrics = predictor.evaluate(test_crops, test_ctf)
            rows.append({"labelled fraction": fraction, "labelled holes": len(train) + len(val), "method": name,
                         "MAE (Å)": metrics["mae"], "Spearman ρ": metrics["spearman_rho"],
                         "accuracy at 6 Å": metrics["accuracy"], "seconds": time.perf_counter() - tic})
            print(rows[-1], flush=True)
    report = pd.DataFrame(rows)
    with atomic_path(args.out) as tmp:
        report.to_csv(tmp, index=False)
    print(f"\n{args.backbone} at {args.input_size} px, {args.steps} steps of {BATCH} labelled crops, trained on grids "
          f"{args.train_grids} ({len(crops)} holes), tested on grids {args.test_grids} ({len(test_crops)} holes); "
          f"learned policy {learned.describe()} (searched at {args.search_fraction:g} in {search_seconds:.0f} s)")
    print(report.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
