"""Time to load a CryoRL split into an Atlas (median of repeats).

    python benchmarks/load_speed.py [--data ../shared/data/aldolase-train] [--split train] [--repeats 20]
"""
from __future__ import annotations

import argparse
import statistics
import timeit
from pathlib import Path

from cryorl import load_cryorl_dataset

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "aldolase-train"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="train")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    atlas = load_cryorl_dataset(args.data, args.split)     # warm-up (imports, caches)
    times = timeit.repeat(lambda: load_cryorl_dataset(args.data, args.split), number=1, repeat=args.repeats)
    print(f"{atlas}\nload time: median {statistics.median(times) * 1e3:.1f} ms, min {min(times) * 1e3:.1f} ms "
          f"over {args.repeats} repeats")


if __name__ == "__main__":
    main()
