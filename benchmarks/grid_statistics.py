"""Statistics of the real Aldolase training split next to simulated grids (mean ± sd over seeds).

    python benchmarks/grid_statistics.py [--data ../shared/data/aldolase-train] [--seeds 20] [--preset NAME]
                                         [--markdown] [--calibrate]

``--preset`` draws the grids of a simulated preset (e.g. ``simulated-0.1.0``, the 0.1.0 simulator's grid) instead
of the built-in default. ``--markdown`` prints a Markdown table with simulated / real and whether it lies within
±20 % (the grid sizes - holes, patches, squares, tiles - are the session's, not the split's, and are not compared).
``--calibrate`` also prints collection costs calibrated from the real session's timestamps.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from cryorl import load_cryorl_dataset
from cryorl.costs import calibrate_costs
from cryorl.gridstats import grid_statistics
from cryorl.synth import GridSpec, simulate_atlas

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "aldolase-train"
SIZES = ("holes", "patches", "squares", "tiles")


def preset_grid(name: str | None) -> GridSpec:
    """The GridSpec of a simulated preset (the default grid without one)."""
    if name is None:
        return GridSpec()
    import yaml

    from cryorl.presets import preset_path

    settings = yaml.safe_load(preset_path(name).read_text()) or {}
    if "data" in settings:
        raise SystemExit(f"preset {name!r} is a real data set, not a simulated grid")
    return GridSpec.from_mapping(settings.get("grid", {}))


def markdown(table: pd.DataFrame, real_column: str | None) -> str:
    lines = ["| statistic | real | simulated (mean ± sd) | simulated / real | within ±20 % |", "|---|---|---|---|---|"]
    for key, row in table.iterrows():
        sim = f"{row['simulated mean']:.3f} ± {row['simulated sd']:.3f}"
        real = row[real_column] if real_column else float("nan")
        if pd.isna(real):
            lines.append(f"| {key} |  | {sim} |  |  |")
            continue
        ratio = row["simulated mean"] / real if real else float("nan")
        verdict = "(grid size)" if key in SIZES else ("yes" if 0.8 <= ratio <= 1.2 else "**no**")
        lines.append(f"| {key} | {real:.3f} | {sim} | {ratio:.2f} | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a CryoRL-format folder")
    parser.add_argument("--split", default="train")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--preset", help="a simulated preset's grid instead of the default (e.g. simulated-0.1.0)")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table with simulated / real")
    parser.add_argument("--calibrate", action="store_true")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (the table has a standard deviation)")

    spec = preset_grid(args.preset)
    sims = pd.DataFrame([grid_statistics(simulate_atlas(seed, spec)) for seed in range(args.seeds)])
    table = pd.DataFrame({"simulated mean": sims.mean(), "simulated sd": sims.std()})
    real_column = None
    if (args.data / f"target_CTF_Y1_{args.split}.csv").exists() or any(args.data.glob(f"CTF_{args.split}*")):
        real = load_cryorl_dataset(args.data, args.split)
        real_column = f"real ({args.split}, {len(real)} holes)"
        table.insert(0, real_column, pd.Series(grid_statistics(real)))
        if args.calibrate:
            print("costs calibrated from timestamps:", calibrate_costs(args.data / "timestamps.csv", real))
    else:
        print(f"(no real data at {args.data}; showing simulated grids only)")
    if args.markdown:
        print(markdown(table, real_column))
    else:
        print(table.to_string(float_format=lambda v: f"{v:9.3f}"))


if __name__ == "__main__":
    main()
