"""Refit the shipped calibration (predicted CTFMaxRes → probability of a good hole) on real outcomes and check it.

    python benchmarks/calibration.py            # fit, report, write cryorl/resources/calibration.json (~2 min)
    python benchmarks/calibration.py --check    # report only
    python benchmarks/calibration.py --select   # the planner on training grids under each candidate fit (~7 min)

The shipped calibration is fitted on the real Aldolase training split with its published predictions and with
predictions of unseen quality (degradation seed 1), and its online prior on the split at MAE 1.97 (in-sample), 2.2,
2.55 (unseen), 2.9 and 3.2 Å and on simulated grids 1000-1019 cycling through them
(`cryorl.calibration.fit_on_real_outcomes`), on `SHARE_FEATURES`; the calibration on the patch's and square's
means alone (shipped before, ``planner-means``) is fitted alike for comparison. ``--select`` compares the candidate
fits on the means (the shares calibration was chosen with benchmarks/degradations.py) by what the planner (static
and online) collects with each on training grids only — the split at in-sample and unseen quality (degradation seed
1), simulated grids 1000-1001 at unseen and 1002 at in-sample quality, 10 starts from reset(seed=1000 + i) at
120/240/480 min — as mean good exposures and their mean ratio to the previous calibration's. The report gives the
log-loss (nats, lower is better) on the real split (in-sample predictions, and unseen-quality ones of degradation
seed 0, the benchmarks' real-grid proxy — both share their outcomes with the fit) and on simulated grids never used
for fitting (90001-90003, at in-sample and unseen quality and at MAE 1.9 and 3.2 Å) of: the shipped calibration;
the one on the means alone;
cryorl's earlier one (fitted on simulated grids 1000-1019 at in-sample quality); one fitted on simulated grids of
the training qualities; each grid's own fit (a floor); and the shipped one updated online from 30 and from 100
measured holes of the grid (drawn uniformly; the log-loss is over the holes not measured, averaged over 5 draws).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from cryorl import load_cryorl_dataset, simulate_atlas
from cryorl.calibration import (
    DEFAULT_CALIBRATION,
    Calibration,
    OnlineCalibration,
    fit_on_real_outcomes,
    fit_on_simulated_grids,
)
from cryorl.prediction_quality import with_prediction_quality
from cryorl.synth import TEST_GRID_SEEDS

SHARED_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "aldolase-train"
HELD_OUT_SEEDS = TEST_GRID_SEEDS


def online_loss(calibration: Calibration, atlas, measured: int, draws: int = 5) -> float:
    """Mean log-loss of the holes not measured after the online update from ``measured`` random holes."""
    good = atlas.is_good(calibration.threshold)
    losses = []
    for draw in range(draws):
        holes = np.random.default_rng(draw).permutation(len(atlas))
        grid = OnlineCalibration(calibration, atlas, newton_steps=10)
        grid.update(holes[:measured], good[holes[:measured]])
        z, rest = grid.log_odds(), holes[measured:]
        losses.append(np.mean(np.logaddexp(0.0, z[rest]) - good[rest] * z[rest]))
    return float(np.mean(losses))


def select(real) -> None:
    """The planner under each candidate calibration on training grids (module docstring)."""
    from cryorl.agents import PlannerPolicy, evaluate_policy, summarize
    from cryorl.calibration import PRIOR_SEEDS, TRAINING_QUALITIES, _training_simulations, online_prior

    prior_grids = [with_prediction_quality(real, q, seed=1) for q in TRAINING_QUALITIES]
    prior_grids += _training_simulations(PRIOR_SEEDS, TRAINING_QUALITIES)
    unseen = with_prediction_quality(real, "unseen", seed=1)
    fits = {"previous (simulated, in-sample)": fit_on_simulated_grids(prediction_quality="in-sample"),
            "real split in-sample": Calibration.fit_atlases([real]),
            "real split in-sample + unseen (means)": Calibration.fit_atlases([real, unseen]),
            "real split at 5 qualities": Calibration.fit_atlases(prior_grids[:len(TRAINING_QUALITIES)]),
            "real split at 5 qualities + simulated": Calibration.fit_atlases(prior_grids),
            "simulated at 5 qualities": fit_on_simulated_grids()}
    grids = {"real unseen": unseen, "real in-sample": real, "sim 1000 unseen": simulate_atlas(1000),
             "sim 1001 unseen": simulate_atlas(1001), "sim 1002 in-sample": simulate_atlas(1002,
                                                                                      prediction_quality="in-sample")}
    rows = []
    for name, fitted in fits.items():
        calibration = Calibration(fitted.weights, 6.0, name, online_prior(fitted, prior_grids))
        for online in (False, True):
            good = np.array([summarize(evaluate_policy(PlannerPolicy(calibration, online=online), atlas, episodes=10,
                                                       seed=1000, budgets=(120, 240, 480)))["good_mean"].to_numpy()
                             for atlas in grids.values()])
            rows.append({"calibration": name, "online": online, "good": good})
            print(f"{name:42s} online={online!s:5s} " + " | ".join(" ".join(f"{v:5.1f}" for v in r) for r in good),
                  flush=True)
    base = rows[0]["good"]
    print("\nmean ratio to the previous calibration (static), over grids: all budgets / 120 / 240 / 480 min")
    for row in rows:
        ratio = row["good"] / base
        print(f"{row['calibration']:42s} online={row['online']!s:5s} {ratio.mean():.4f} / "
              + " / ".join(f"{v:.4f}" for v in ratio.mean(axis=0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_TRAIN)
    parser.add_argument("--check", action="store_true", help="do not write the shipped file")
    parser.add_argument("--select", action="store_true", help="compare candidate fits by the planner's collections")
    args = parser.parse_args()
    real = load_cryorl_dataset(args.data, "train")
    if args.select:
        select(real)
        return
    shipped = fit_on_real_outcomes(real)
    means = fit_on_real_outcomes(real, shares=False)
    candidates = {"shipped (real outcomes, shares)": shipped, "means alone (real outcomes)": means,
                  "previous (simulated, in-sample)": fit_on_simulated_grids(prediction_quality="in-sample"),
                  "simulated, training qualities": fit_on_simulated_grids()}
    grids = {"real split, in-sample": [real], "real split, unseen (proxy)": [with_prediction_quality(real, "unseen")]}
    for quality in ("in-sample", "unseen", 1.9, 3.2):
        grids[f"simulated {quality}"] = [simulate_atlas(s, prediction_quality=quality) for s in HELD_OUT_SEEDS]
    table = {}
    for name, atlases in grids.items():
        row = {label: np.mean([c.log_loss(a) for a in atlases]) for label, c in candidates.items()}
        row["own fit (floor)"] = np.mean([Calibration.fit_atlases([a]).log_loss(a) for a in atlases])
        for measured in (30, 100):
            row[f"shipped + online, {measured} measured"] = np.mean([online_loss(shipped, a, measured)
                                                                    for a in atlases])
        table[name] = row
    print(f"{shipped}\n{means}\n\nlog-loss (nats, lower is better; online rows: over the holes not measured)")
    print(pd.DataFrame(table).T.to_string(float_format=lambda v: f"{v:.4f}"))
    if not args.check:
        shipped.save(DEFAULT_CALIBRATION)
        print(f"\nwrote {DEFAULT_CALIBRATION}")


if __name__ == "__main__":
    main()
