"""How far a policy that reads the predictions can go: the planner on probabilities that know more than it can.

    python benchmarks/ceilings.py --grid proxy proxy-classifier     # a few minutes per grid on 2 cores
    python benchmarks/ceilings.py --table                            # the Markdown table of every grid run so far

On each grid (the names of benchmarks/unseen.py; 50 starts, episode i from reset(seed=i), its setting's costs and
budgets) the planner runs on four sets of probabilities (the last three are `cryorl.agents.ceilings`, registered
as references the way the oracle is: `cryorl evaluate --agent planner-neighbours ... --out OUT` runs one on a grid
whose holes' outcomes are known):

- ``planner``: the shipped calibration (what `cryorl evaluate --agent planner` does);
- ``planner-recalibrated``: the calibration's log-odds recalibrated on the grid itself (bias and slope fitted on all
  its outcomes): the best log-loss the online update of ``planner-online`` can reach, known from the first move;
- ``planner-neighbours``: that plus the mean residual of every other hole of the patch and of the square
  (`cryorl.measured_neighbours.neighbour_probabilities`): all that measured neighbours could teach, known before
  the first move — a ceiling in log-loss of learning from the grid's exposures under that model (not in good
  exposures: a better log-loss can plan worse, and on the proxy at 480 min it does);
- ``planner-outcomes``: the outcomes themselves (p 0.001 or 0.999): the planner's plan when nothing is uncertain.

beside greedy-local, greedy-2t and the oracle. ``planner-outcomes`` against the oracle measures what the plan
loses as a plan; ``planner-neighbours`` against ``planner``, what learning on the grid could add. Each run writes
``benchmarks/reports/ceilings/GRID.csv``, keeping the rows of agents it did not run (``--agents``: the agents to
run again, e.g. the three that read the calibration after it changes).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

# benchmarks/ is on sys.path when this script runs
from unseen import DEFAULT_DATA, SETTINGS, load_grid, refuse_other_episodes, save_keeping_other_agents, setting

from cryorl.agents import evaluate_policy, make_policy, summarize

REPORTS = Path(__file__).resolve().parent / "reports" / "ceilings"
AGENTS = ("greedy-local", "greedy-2t", "planner", "planner-recalibrated", "planner-neighbours", "planner-outcomes",
          "oracle")


def run(grid: str, data: Path, episodes: int, agents=AGENTS) -> pd.DataFrame:
    atlas = load_grid(grid, data)
    if not np.isfinite(atlas.true_ctf).all():
        raise SystemExit(f"{grid}: every hole's outcome must be known for its ceilings")
    costs, rows = setting(grid), []
    print(f"{grid}: {len(atlas)} holes, {costs}", flush=True)
    for policy in (make_policy(agent, seed=0) for agent in agents):
        tic = time.perf_counter()
        summary = summarize(evaluate_policy(policy, atlas, episodes=episodes, seed=0, budgets=SETTINGS[costs],
                                            costs=costs))
        summary.insert(0, "grid", grid)
        rows.append(summary)
        print(f"  {policy.name:>20}: " + "  ".join(f"{b:g} min {m:6.1f}" for b, m in
                                                 zip(summary.budget, summary.good_mean))
              + f"   ({time.perf_counter() - tic:.0f} s)", flush=True)
    return pd.concat(rows, ignore_index=True)


def table() -> str:
    """Per grid and agent: mean good exposures at each budget, and their ratio to greedy-2t and greedy-local."""
    def order(path: Path) -> tuple:                                 # real-based grids first, each beside its classifier
        base = path.stem.removesuffix("-classifier")
        return base.split("-")[0] not in ("proxy", "real"), base, path.stem != base

    frames = [pd.read_csv(path) for path in sorted(REPORTS.glob("*.csv"), key=order)]
    if not frames:
        raise SystemExit(f"no results in {REPORTS}; run with --grid first")
    frame = pd.concat(frames, ignore_index=True)
    lines = ["| grid | agent | good exposures (per budget) | × greedy-2t | × greedy-local |", "|---|---|---|---|---|"]
    for grid, rows in frame.groupby("grid", sort=False):
        means = rows.pivot(index="agent", columns="budget", values="good_mean")
        budgets = " / ".join(f"{b:g}" for b in means.columns)
        for agent in (a for a in AGENTS if a in means.index):
            ratio = {ref: " / ".join(f"{r:.3f}" for r in means.loc[agent] / means.loc[ref])
                     for ref in ("greedy-2t", "greedy-local")}
            lines.append(f"| {grid} ({budgets} min) | {agent} | " + " / ".join(f"{m:.1f}" for m in means.loc[agent])
                         + f" | {ratio['greedy-2t']} | {ratio['greedy-local']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", nargs="*", default=[])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the real Aldolase training split")
    parser.add_argument("--table", action="store_true", help="print the table of every grid run so far")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for grid in args.grid:                         # before any run: a report holds one number of episodes
        refuse_other_episodes(REPORTS / f"{grid}.csv", args.episodes)
    for grid in args.grid:
        save_keeping_other_agents(run(grid, args.data, args.episodes, args.agents), REPORTS / f"{grid}.csv")
    if args.table:
        print(table())


if __name__ == "__main__":
    main()
