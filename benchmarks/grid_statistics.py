"""Statistics of the real Aldolase training split next to simulated grids (mean ± sd over seeds).

    python benchmarks/grid_statistics.py [--data ../shared/data/aldolase-train] [--seeds 20] [--calibrate]

``--calibrate`` also prints collection costs calibrated from the real session's timestamps.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from cryorl import load_cryorl_dataset
from cryorl.costs import calibrate_costs
from cryorl.gridstats import grid_statistics
from cryorl.synth import simulate_atlas

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "aldolase-train"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a CryoRL-format folder")
    parser.add_argument("--split", default="train")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--calibrate", action="store_true")
    args = parser.parse_args()

    sims = pd.DataFrame([grid_statistics(simulate_atlas(seed)) for seed in range(args.seeds)])
    table = pd.DataFrame({"simulated mean": sims.mean(), "simulated sd": sims.std()})
    if (args.data / f"target_CTF_Y1_{args.split}.csv").exists() or any(args.data.glob(f"CTF_{args.split}*")):
        real = load_cryorl_dataset(args.data, args.split)
        table.insert(0, f"real ({args.split}, {len(real)} holes)", pd.Series(grid_statistics(real)))
        if args.calibrate:
            print("costs calibrated from timestamps:", calibrate_costs(args.data / "timestamps.csv", real))
    else:
        print(f"(no real data at {args.data}; showing simulated grids only)")
    print(table.to_string(float_format=lambda v: f"{v:9.3f}"))


if __name__ == "__main__":
    main()
