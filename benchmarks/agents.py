"""Every policy × budget × held-out grid: mean good exposures over seeded random starts, the share of the
greedy-local → oracle gap a policy closes, and decision latency.

    python benchmarks/agents.py --agents greedy-local snowball oracle dqn ppo [--episodes 50] [--out DIR]
    python benchmarks/agents.py --agents dqn --real-tiles 3 4 5      # real held-out part only
    python benchmarks/agents.py --costs cryorl-2022 --classifier --budgets 120 240 360 480 600   # the 2022 setting

Grids: simulated grids of the real session's shape whose seeds no training run draws (90001-90003), and the real
Aldolase training split from ../shared (or --data), whole or restricted to the tiles a run did not train on.
``--classifier`` replaces every grid's predicted CTFMaxRes by a two-class classifier's probability of CTFMaxRes
< 6 Å (sigmoid((6 − predicted) / 1.5 Å), two decimals, as the 2022 release has it) for the first paper's setting.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from decision_latency import latency  # benchmarks/ is on sys.path when this script runs

from cryorl import load_cryorl_dataset, simulate_atlas
from cryorl.agents import evaluate_policy, make_policy, summarize
from cryorl.fileio import atomic_path
from cryorl.quality import as_classifier
from cryorl.synth import TEST_GRID_SEEDS

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "aldolase-train"


def grids(args) -> dict[str, object]:
    out = {f"sim-{seed}": simulate_atlas(seed) for seed in args.sim_seeds}
    if (args.data / f"target_CTF_Y1_{args.split}.csv").exists():
        real = load_cryorl_dataset(args.data, args.split)
        if args.real_tiles:
            real = real.subset(np.isin(real.tile, args.real_tiles))
            out[f"real-tiles-{'-'.join(map(str, args.real_tiles))}"] = real
        else:
            out["real-train-split"] = real
    return {name: as_classifier(atlas) for name, atlas in out.items()} if args.classifier else out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", default=["random", "predict-rank", "greedy-local", "snowball",
                                                        "oracle"])
    parser.add_argument("--budgets", type=float, nargs="+", default=[120, 240, 480])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sim-seeds", type=int, nargs="*", default=list(TEST_GRID_SEEDS))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="train")
    parser.add_argument("--real-tiles", type=int, nargs="*", default=None)
    parser.add_argument("--costs", default="cryorl-2023", help="cost preset (cryorl-2023, cryorl-2022, ...)")
    parser.add_argument("--classifier", action="store_true", help="classifier probabilities instead of CTFMaxRes")
    parser.add_argument("--out", type=Path, default=None, help="write summary.csv here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for one decision)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for grid_name, atlas in grids(args).items():
        for agent in dict.fromkeys(args.agents + ["greedy-local", "oracle"]):
            trajectories = evaluate_policy(make_policy(agent, seed=args.seed), atlas, episodes=args.episodes,
                                           seed=args.seed, budgets=args.budgets, costs=args.costs)
            summary = summarize(trajectories)
            summary.insert(0, "grid", grid_name)
            rows.append(summary)
            print(f"{grid_name:>20} {agent:>14}: " + "  ".join(
                f"{b:g} min {g:6.1f}" for b, g in zip(summary.budget, summary.good_mean)), flush=True)
    table = pd.concat(rows, ignore_index=True)
    wide = table.pivot_table(index=["grid", "agent"], columns="budget", values="good_mean")
    for grid_name in wide.index.get_level_values(0).unique():
        greedy, oracle = wide.loc[(grid_name, "greedy-local")], wide.loc[(grid_name, "oracle")]
        for agent in wide.loc[grid_name].index:
            gap = (wide.loc[(grid_name, agent)] - greedy) / (oracle - greedy)
            for budget, value in gap.items():
                table.loc[(table.grid == grid_name) & (table.agent == agent) & (table.budget == budget),
                          "gap_closed"] = value
    print("\nmean good exposures (rows: grid, agent; columns: budget in minutes)")
    print(wide.round(1).to_string())
    print("\nshare of the greedy-local -> oracle gap closed")
    print(table.pivot_table(index=["grid", "agent"], columns="budget", values="gap_closed").round(3).to_string())
    print("\ndecision latency")
    print(pd.DataFrame({agent: latency(agent) for agent in dict.fromkeys(args.agents)}).T.round(3).to_string())
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.out / "summary.csv") as tmp:
            table.to_csv(tmp, index=False)


if __name__ == "__main__":
    main()
