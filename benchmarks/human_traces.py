"""The committed benchmark reports: every agent against the oracle and human traces.

    python benchmarks/human_traces.py                       # both reports below (about 10 minutes on 2 cores)
    python benchmarks/human_traces.py --only simulated
    python benchmarks/human_traces.py --data-2022 ~/.cache/cryorl/aldolase-2022   # + the first paper's setting

- ``benchmarks/reports/simulated/``: the built-in simulated grid (seed 0), with 10 simulated operators;
- ``benchmarks/reports/aldolase-train/``: the real Aldolase training split from ../shared with the session's own
  operator (its ``timestamps.csv``);
- ``benchmarks/reports/aldolase-2022-val/`` (with ``--data-2022``): the first CryoRL paper's validation split and
  2 / 5 / 10 / 20-minute costs, beside the paper's published figures.

Each is one ``cryorl benchmark`` command (printed, and written into the report).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cryorl.cli import main as cryorl_main

HERE = Path(__file__).resolve().parent
REPORTS = HERE / "reports"
SHARED_TRAIN = HERE.parents[1] / "shared" / "data" / "aldolase-train"


def _path(path: Path) -> str:
    """Relative to the working directory, so the command written into a report is the one to type."""
    return os.path.relpath(path)


def commands(args) -> dict[str, list[str]]:
    common = ["--episodes", str(args.episodes), "--seed", "0", "--no-steps", "--overwrite"]
    out = {"simulated": ["benchmark", "--out", _path(REPORTS / "simulated"), *common]}
    if args.data.exists():
        out["aldolase-train"] = ["benchmark", "--data", _path(args.data), "--split", "train",
                                 "--out", _path(REPORTS / "aldolase-train"), *common]
    if args.data_2022 is not None:
        out["aldolase-2022-val"] = ["benchmark", "--data", _path(args.data_2022), "--split", "val", "--era", "2022",
                                    "--costs", "cryorl-2022", "--budgets", "120", "240", "360", "480", "600",
                                    "--published", "cryorl-2022", "--out", _path(REPORTS / "aldolase-2022-val"),
                                    *common]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_TRAIN, help="the Aldolase training split")
    parser.add_argument("--data-2022", type=Path, default=None, help="`cryorl data download aldolase --era 2022`")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--only", nargs="*", default=None, help="report names to make")
    args = parser.parse_args()
    for name, argv in commands(args).items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}: cryorl {' '.join(argv)}", flush=True)
        if cryorl_main(argv) != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
