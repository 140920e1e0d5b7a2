"""Refit the shipped calibration (predicted CTFMaxRes → probability of a good hole) and check it on real data.

    python benchmarks/calibration.py            # fit on simulated grids 1000-1019, report, write the shipped file
    python benchmarks/calibration.py --check    # report only

The report: log-loss (nats) on held-out simulated grids and on the real Aldolase training split, of the shipped
calibration, of one refitted on the real split itself (in-sample: the best any calibration could do there, and
over-confident elsewhere since the published predictions are in-sample for the regressor), and of the uncalibrated
prior mapping (`cryorl.quality`); then the reliability of the shipped calibration on the real split (mean predicted
probability vs observed fraction good, by decile).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from cryorl import load_cryorl_dataset, simulate_atlas
from cryorl.calibration import DEFAULT_CALIBRATION, Calibration, fit_on_simulated_grids
from cryorl.quality import probability_good

SHARED_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "aldolase-train"


def prior_loss(atlas) -> float:
    p = np.clip(probability_good(atlas), 1e-6, 1 - 1e-6)
    good = atlas.is_good()
    return float(-np.mean(np.where(good, np.log(p), np.log1p(-p))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_TRAIN)
    parser.add_argument("--check", action="store_true", help="do not write the shipped file")
    args = parser.parse_args()
    calibration = fit_on_simulated_grids()
    held_out = [simulate_atlas(seed) for seed in range(2000, 2010)]
    rows = {"simulated grids 2000-2009": held_out}
    if (args.data / "target_CTF_Y1_train.csv").exists():
        rows["real Aldolase training split"] = [load_cryorl_dataset(args.data, "train")]
    table = {}
    for name, atlases in rows.items():
        table[name] = {"shipped (fitted on simulated grids)": np.mean([calibration.log_loss(a) for a in atlases]),
                       "prior mapping (uncalibrated)": np.mean([prior_loss(a) for a in atlases]),
                       "refitted on these grids (in-sample)": np.mean(
                           [Calibration.fit_atlases(atlases).log_loss(a) for a in atlases])}
    print(f"{calibration}\n\nlog-loss (nats, lower is better)")
    print(pd.DataFrame(table).to_string(float_format=lambda v: f"{v:.4f}"))
    if "real Aldolase training split" in rows:
        real = rows["real Aldolase training split"][0]
        p = calibration.probability_good(real)
        decile = pd.qcut(p, 10, labels=False, duplicates="drop")
        reliability = pd.DataFrame({"predicted": p, "observed": real.is_good()}).groupby(decile).mean()
        print("\nreliability on the real split (by decile of the predicted probability)")
        print(reliability.to_string(float_format=lambda v: f"{v:.3f}"))
    if not args.check:
        calibration.save(DEFAULT_CALIBRATION)
        print(f"\nwrote {DEFAULT_CALIBRATION}")


if __name__ == "__main__":
    main()
