"""Prediction quality of the real-grid proxy and of simulated grids, and why the unseen error grows with CTFMaxRes.

    python benchmarks/prediction_quality.py          # ~1 min on 2 cores

1. The training split at unseen quality (degradation seed 0) with the added error growing with the hole's
   CTFMaxRes (exponent 2, the default) and of one size for every hole (exponent 0): MAE, Pearson r, accuracy at
   6 Å, and greedy-local's share of the oracle's good exposures (20 starts, 120 / 240 / 480 min, cryorl-2023),
   to compare with the real unseen grid's (accuracy 0.89; greedy-local 0.89 / 0.89 / 0.87 of the oracle).
2. Simulated grids (seeds 0-19) at in-sample and unseen quality and at MAE 1.9 and 3.2 Å: mean and range of
   MAE, r and accuracy.
3. What the unseen degradation does to good (≤ 6 Å) and bad (> 10 Å) holes of the real split and of simulated
   grids 90001-90003: the share of bad holes, how far it moves each kind's prediction (mean |unseen −
   in-sample|, Å) and the share of bad holes it leaves predicted below 3 Å.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryorl import load_cryorl_dataset, simulate_atlas
from cryorl.agents import evaluate_policy, make_policy, summarize
from cryorl.prediction_quality import PREDICTION_QUALITIES, degrade_predictions, prediction_metrics

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "aldolase-train"


def good(agent: str, atlas) -> np.ndarray:
    return summarize(evaluate_policy(make_policy(agent), atlas, episodes=20, budgets=(120, 240, 480)))[
        "good_mean"].to_numpy()


def main() -> None:
    real = load_cryorl_dataset(DEFAULT_DATA, "train")
    oracle = good("oracle", real)
    unseen = PREDICTION_QUALITIES["unseen"]
    rows = {"in-sample (published)": real}
    for exponent in (2.0, 0.0):
        rows[f"unseen, error exponent {exponent:g}"] = degrade_predictions(real, unseen.mae, unseen.pearson_r,
                                                                           seed=0, exponent=exponent)
    print("training split: prediction quality and greedy-local's share of the oracle (20 starts)")
    for name, atlas in rows.items():
        m = prediction_metrics(atlas.predicted_ctf, atlas.true_ctf)
        share = good("greedy-local", atlas) / oracle
        print(f"  {name:28s} MAE {m['mae']:.2f} Å  r {m['pearson_r']:.3f}  accuracy {m['accuracy']:.3f}  "
              f"greedy-local / oracle {' / '.join(f'{v:.3f}' for v in share)}")
    table = []
    for quality in ("in-sample", "unseen", 1.9, 3.2):
        for seed in range(20):
            atlas = simulate_atlas(seed, prediction_quality=quality)
            table.append({"quality": str(quality), **prediction_metrics(atlas.predicted_ctf, atlas.true_ctf)})
    frame = pd.DataFrame(table).groupby("quality", sort=False).agg(["mean", "min", "max"])
    print("\nsimulated grids, seeds 0-19")
    print(frame.to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nthe unseen degradation's moves: bad holes share | mean move of good / bad holes (Å) | bad predicted < 3 Å")
    pairs = {"real split (seed 0)": (real, rows["unseen, error exponent 2"])}
    for seed in (90001, 90002, 90003):
        pairs[f"simulated {seed}"] = (simulate_atlas(seed, prediction_quality="in-sample"), simulate_atlas(seed))
    for name, (in_sample, unseen_grid) in pairs.items():
        truth, move = in_sample.true_ctf, np.abs(unseen_grid.predicted_ctf - in_sample.predicted_ctf)
        bad = truth > 10.0
        print(f"  {name:20s} {bad.mean():.3f} | {move[truth <= 6.0].mean():.2f} / {move[bad].mean():.2f} | "
              f"{(unseen_grid.predicted_ctf[bad] < 3.0).mean():.3f}")


if __name__ == "__main__":
    main()
