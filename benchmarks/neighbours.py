"""How much measured neighbours can teach, per grid: the ceiling of learning from a grid's own exposures.

    python benchmarks/neighbours.py            # ~10 s; writes benchmarks/reports/neighbours.csv

For each grid (the names of benchmarks/unseen.py: the real split in-sample, its unseen-quality proxy at three
degradation seeds and at MAE 3.2 Å, simulated grids 90001-90003 at unseen and in-sample quality, and the same grids
with an image model that reads its patch, ``cryorl.synth.CONTEXT_IMAGE_MODEL``), on its measured
holes: the log-loss of the shipped calibration, of the calibration recalibrated on the grid itself (bias and
slope), and of that plus the mean residual of every other hole of the patch and of the square
(`cryorl.measured_neighbours.neighbour_information`). The last is fitted on the grid it is scored on, as if every
neighbour had been exposed: a ceiling, not what an online learner reaches.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from cryorl import load_cryorl_dataset, simulate_atlas
from cryorl.fileio import atomic_path
from cryorl.gridstats import grid_statistics
from cryorl.measured_neighbours import neighbour_information
from cryorl.prediction_quality import prediction_metrics, with_prediction_quality
from cryorl.synth import CONTEXT_IMAGE_MODEL

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "aldolase-train"
REPORT = Path(__file__).resolve().parent / "reports" / "neighbours.csv"


def grids(data: Path):
    real = load_cryorl_dataset(data, "train")
    yield "real (in-sample)", real
    for seed in (0, 1, 2):
        yield f"proxy (unseen, degradation seed {seed})", with_prediction_quality(real, "unseen", seed=seed)
    yield "proxy (MAE 3.2, seed 0)", with_prediction_quality(real, 3.2, seed=0)
    for seed in (90001, 90002, 90003):
        yield f"sim-{seed} (unseen)", simulate_atlas(seed)
        yield f"sim-{seed} (in-sample)", simulate_atlas(seed, prediction_quality="in-sample")
    for seed in (90001, 90002, 90003):                 # an image model that reads its patch, as the real one does
        yield f"simctx-{seed} (unseen)", simulate_atlas(seed, **CONTEXT_IMAGE_MODEL)
        yield f"simctx-{seed} (in-sample)", simulate_atlas(seed, prediction_quality="in-sample",
                                                          **CONTEXT_IMAGE_MODEL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the real Aldolase training split")
    args = parser.parse_args()
    rows = []
    for name, atlas in grids(args.data):
        quality = prediction_metrics(atlas.predicted_ctf, atlas.true_ctf)
        clustering = grid_statistics(atlas)["prediction eta2 within patch"]
        rows.append({"grid": name, "mae": quality["mae"], "pearson_r": quality["pearson_r"],
                     "prediction_eta2_patch": clustering, **neighbour_information(atlas)})
    frame = pd.DataFrame(rows)
    with atomic_path(REPORT) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4f")
    print("| grid | MAE | r | predictions' η² within patch | calibrated | recalibrated | with every neighbour | gain "
          "| patch residual r |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in frame.itertuples():
        print(f"| {row.grid} | {row.mae:.2f} | {row.pearson_r:.2f} | {row.prediction_eta2_patch:.2f} | "
              f"{row.calibrated:.3f} | {row.recalibrated:.3f} | {row.with_neighbours:.3f} | {row.gain:.3f} | "
              f"{row.patch_residual_r:.2f} |")


if __name__ == "__main__":
    main()
