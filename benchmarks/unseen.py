"""Every rule at in-sample and at unseen prediction quality: the table of issue 20.

    python benchmarks/unseen.py --grid proxy            # one grid per run (a few minutes each on 2 cores)
    python benchmarks/unseen.py --grid real
    python benchmarks/unseen.py --grid sim-90001 sim-90002
    python benchmarks/unseen.py --grid proxy-3.2 sim-90001-1.9 --episodes 20      # robustness: MAE 1.9-3.2 Å
    python benchmarks/unseen.py --grid proxy-classifier sim-90001-classifier     # the 2022 setting
    python benchmarks/unseen.py --table                 # the Markdown tables of every grid run so far

Grids (cryorl-2023 costs, budgets 120 / 240 / 480 min, episode i starting from reset(seed=i), as `cryorl evaluate
--episodes 50 --seed 0`):

- ``proxy``: the real-grid proxy of an unseen grid — the real Aldolase training split with predictions of unseen
  quality (MAE 2.55 Å, r 0.63, degradation seed 0), written as a CryoRL folder and read back as `cryorl evaluate
  --data` reads it (``proxy-MAE``: at that MAE);
- ``real``: the training split with its published, in-sample predictions;
- ``sim-SEED``: the simulated grid of that seed at the default, unseen quality, as `cryorl evaluate --grid-seed
  SEED` (``sim-SEED-MAE``: at that MAE; ``sim-SEED-in-sample``). Seeds 90001-90003 are used for no fit and no
  tuning;
- ``simctx-SEED``: the same grid and truth with an image model whose predictions cluster by patch as the real
  regressor's do (``cryorl.synth.CONTEXT_IMAGE_MODEL``; README, The simulated grid), then degraded the same way;
  an experiment, not the default.

Agents: greedy-local, greedy-2t (shipped thresholds), the planner before issue 20 (``planner-before``: the
calibration fitted on simulated grids 1000-1019 at in-sample quality, cryorl's shipped one until then), the
planner (the shipped calibration, fitted on real outcomes and reading the shares of the patch and square that
look good), ``planner-online`` and the oracle; ``--agents planner-means`` adds the planner on the calibration
shipped before the shares one (fitted on the same real outcomes on the means of the patch and square only, kept
in ``benchmarks/calibrations/calibration-means.json``). The training split's
outcomes were used to fit the calibration and to tune greedy-2t: on ``proxy`` and ``real`` those two are fitted on
the grid they are evaluated on (its predictions there are new draws or in-sample ones), on ``sim-*`` they are not.
Each run writes ``benchmarks/reports/unseen/GRID.csv``, keeping the rows of agents it did not run: ``--agents dqn
ppo`` adds the learned agents to a grid's table. A report holds one number of episodes; a run of another into it
is refused before it starts.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryorl import load_cryorl_dataset, simulate_atlas
from cryorl.agents import PlannerPolicy, evaluate_policy, make_policy, summarize
from cryorl.calibration import Calibration, default_calibration, fit_on_simulated_grids
from cryorl.fileio import atomic_path
from cryorl.prediction_quality import prediction_metrics, write_degraded_split
from cryorl.quality import as_classifier
from cryorl.synth import CONTEXT_IMAGE_MODEL

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "aldolase-train"
REPORTS = Path(__file__).resolve().parent / "reports" / "unseen"
MEANS_CALIBRATION = Path(__file__).resolve().parent / "calibrations" / "calibration-means.json"
AGENTS = ("greedy-local", "greedy-2t", "planner-before", "planner", "planner-online", "oracle")
SETTINGS = {"cryorl-2023": (120, 240, 480), "cryorl-2022": (120, 240, 360, 480, 600)}


def load_grid(name: str, data: Path):
    """The atlas of a grid name (module docstring)."""
    if name.endswith("-classifier"):
        return as_classifier(load_grid(name.removesuffix("-classifier"), data))
    parts = name.split("-", 2)
    if parts[0] in ("proxy", "real"):
        if parts[0] == "real":
            return load_cryorl_dataset(data, "train")
        quality = parts[1] if len(parts) > 1 else "unseen"
        with tempfile.TemporaryDirectory() as folder:
            write_degraded_split(data, folder, "train", quality, seed=0)
            return load_cryorl_dataset(folder, "train")
    if parts[0] in ("sim", "simctx") and len(parts) >= 2:
        quality = parts[2] if len(parts) > 2 else "unseen"
        context = CONTEXT_IMAGE_MODEL if parts[0] == "simctx" else {}
        return simulate_atlas(int(parts[1]), prediction_quality=quality, **context)
    raise ValueError(f"unknown grid {name!r}: proxy[-MAE], real, sim[ctx]-SEED[-MAE|-in-sample]")


def policy(agent: str):
    """An agent by name: a registered policy, or one of the earlier planners kept for comparison."""
    if agent in ("planner-before", "planner-means"):
        earlier = PlannerPolicy(fit_on_simulated_grids(prediction_quality="in-sample") if agent == "planner-before"
                                else Calibration.load(MEANS_CALIBRATION))
        earlier.name = agent
        return earlier
    return make_policy(agent, seed=0)


def setting(grid: str) -> str:
    """The cost setting a grid name runs in (module docstring)."""
    return "cryorl-2022" if grid.endswith("-classifier") else "cryorl-2023"


def top_k(atlas, exposures: float, threshold: float = 6.0) -> float:
    """Good holes among the ``exposures`` holes with the highest calibrated probability (module docstring); holes
    tied at the cut (a classifier's probabilities come in steps of 0.01) count at their mean."""
    p = default_calibration(threshold).probability_good(atlas)
    measured = np.isfinite(atlas.true_ctf)
    p, good = p[measured], atlas.is_good(threshold)[measured]
    k = int(round(exposures))
    levels, level = np.unique(-p, return_inverse=True)             # best probability first
    count, hits = np.bincount(level), np.bincount(level, good)
    before = np.concatenate([[0], np.cumsum(count)[:-1]])
    taken = np.clip(k - before, 0, count)                            # holes taken from each tied level
    return float((hits * taken / count).sum())


def run(grid: str, data: Path, episodes: int, agents) -> pd.DataFrame:
    atlas = load_grid(grid, data)
    costs = setting(grid)
    regressor = atlas if costs == "cryorl-2023" else load_grid(grid.removesuffix("-classifier"), data)
    quality = prediction_metrics(regressor.predicted_ctf, regressor.true_ctf)    # of the regressor it comes from
    print(f"{grid}: {len(atlas)} holes, {costs}, prediction MAE {quality['mae']:.2f} Å, r "
          f"{quality['pearson_r']:.3f}, accuracy {quality['accuracy']:.3f}", flush=True)
    rows = []
    for agent in agents:
        tic = time.perf_counter()
        summary = summarize(evaluate_policy(policy(agent), atlas, episodes=episodes, seed=0,
                                            budgets=SETTINGS[costs], costs=costs))
        summary.insert(0, "grid", grid)
        summary["mae"], summary["pearson_r"] = quality["mae"], quality["pearson_r"]
        rows.append(summary)
        print(f"  {agent:>15}: " + "  ".join(f"{b:g} min {m:6.1f} ± {s:4.1f}" for b, m, s in
                                           zip(summary.budget, summary.good_mean, summary.good_std))
              + f"   ({time.perf_counter() - tic:.0f} s)", flush=True)
        if agent == "oracle" and atlas.has_ctf_predictions:
            bound = summary[["grid", "agent", "budget", "episodes", "good_mean", "good_std", "mae", "pearson_r"]].copy()
            bound["agent"], bound["good_std"] = "top-k", 0.0
            bound["good_mean"] = [top_k(atlas, k) for k in summary.exposures_mean]
            rows.append(bound)
            print(f"  {'top-k':>15}: " + "  ".join(f"{b:g} min {m:6.1f}" for b, m in
                                                   zip(bound.budget, bound.good_mean)), flush=True)
    return pd.concat(rows, ignore_index=True)


def refuse_other_episodes(path: Path, episodes: int) -> None:
    """Exit with one line if ``path`` holds runs of another number of episodes than ``episodes``: a report holds
    one number of episodes, and a rerun must not drop the other agents' rows (checked before any run)."""
    if path.exists():
        earlier = set(pd.read_csv(path, usecols=["episodes"]).episodes)
        if earlier - {episodes}:
            raise SystemExit(f"{path} holds runs of {', '.join(map(str, sorted(earlier)))} episodes, not "
                             f"{episodes}: rerun with that --episodes, or move the file away first")


def save_keeping_other_agents(result: pd.DataFrame, path: Path) -> None:
    """Write a grid's results to ``path`` (atomically), keeping the rows of agents this run did not run from an
    earlier report, which must be of the same number of episodes (:func:`refuse_other_episodes`)."""
    if path.exists():
        for episodes in set(result.episodes):
            refuse_other_episodes(path, int(episodes))
        earlier = pd.read_csv(path)
        result = pd.concat([earlier[~earlier.agent.isin(set(result.agent))], result], ignore_index=True)
    with atomic_path(path) as tmp:
        result.to_csv(tmp, index=False, float_format="%.4f")


def table(costs: str = "cryorl-2023") -> str:
    """A Markdown table of every saved grid of one cost setting: mean ± std of good exposures per agent and
    budget; the best agent in bold, and each agent's ratio to greedy-2t."""
    names = ("proxy", "real")
    paths = sorted(REPORTS.glob("*.csv"), key=lambda p: (p.stem.split("-")[0] not in names, p.stem))
    frames = [pd.read_csv(path) for path in paths if setting(path.stem) == costs]
    if not frames:
        raise SystemExit(f"no {costs} results in {REPORTS}; run with --grid first")
    frame = pd.concat(frames, ignore_index=True)
    budgets = SETTINGS[costs]
    order = frame.groupby("grid").episodes.max().sort_values(ascending=False, kind="stable")   # 50-start runs first
    lines = ["| grid | episodes | agent | " + " | ".join(f"{b} min" for b in budgets) + " | × greedy-2t |",
             "|---|---|---|" + "---|" * (len(budgets) + 1)]
    for grid in order.index:
        rows = frame[frame.grid == grid]
        agents = rows[~rows.agent.isin(["oracle", "top-k"])]
        best = agents.groupby("budget").good_mean.max()
        reference = rows[rows.agent == "greedy-2t"].set_index("budget").good_mean
        # rules, planners, learned agents, bounds
        order = [*AGENTS[:3], "planner-means", *AGENTS[3:-1], "dqn", "ppo", "oracle", "top-k"]
        groups = sorted(rows.groupby("agent", sort=False), key=lambda group: order.index(group[0])
                        if group[0] in order else len(order))
        for agent, agent_rows in groups:
            cells = []
            for _, row in agent_rows.iterrows():
                cell = f"{row.good_mean:.1f} ± {row.good_std:.1f}" if agent != "top-k" else f"{row.good_mean:.1f}"
                cells.append(f"**{cell}**" if agent in set(agents.agent) and row.good_mean == best[row.budget]
                             else cell)
            ratio = " / ".join(f"{r:.3f}" for r in agent_rows.set_index("budget").good_mean / reference) \
                if len(reference) else ""
            lines.append(f"| {grid} (MAE {agent_rows.mae.iloc[0]:.2f}, r {agent_rows.pearson_r.iloc[0]:.2f}) | "
                         f"{int(agent_rows.episodes.iloc[0])} | {agent} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", nargs="*", default=[])
    parser.add_argument("--agents", nargs="+", default=list(AGENTS))
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the real Aldolase training split")
    parser.add_argument("--table", action="store_true", help="print the table of every saved grid")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for one decision)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for grid in args.grid:                         # before any run: a report holds one number of episodes
        refuse_other_episodes(REPORTS / f"{grid}.csv", args.episodes)
    for grid in args.grid:
        save_keeping_other_agents(run(grid, args.data, args.episodes, args.agents), REPORTS / f"{grid}.csv")
    if args.table:
        for costs in SETTINGS:
            if any(setting(path.stem) == costs for path in REPORTS.glob("*.csv")):
                print(f"\n{costs}:\n" + table(costs))


if __name__ == "__main__":
    main()
