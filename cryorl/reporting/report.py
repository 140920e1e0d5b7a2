"""A benchmark report folder: ``report.md`` with the tables, PNG figures, and the tables as CSV.

Every file is written atomically, so an interrupted run leaves the previous report or the new one.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cryorl.figures import save_figure
from cryorl.fileio import atomic_path, atomic_write_text
from cryorl.reporting.benchmark import BenchmarkResult
from cryorl.reporting.markdown import markdown_table
from cryorl.reporting.plots import plot_ctf_histograms, plot_cumulative_good, plot_paths

__all__ = ["write_report", "benchmark_report", "FIGURES"]

FIGURES = {"cumulative_good.png": "Good exposures over time",
           "ctf_histograms.png": "CTFMaxRes of what each agent collected",
           "paths.png": "One episode's path per agent on the grid map"}


def _good_at(clock: pd.DataFrame, column: str, budget: float) -> int:
    """Good exposures by ``budget`` minutes of a trace's clock (the first hole is the start and earns nothing)."""
    within = clock[clock[column] <= budget]
    return int(within["good"].sum())


def human_table(result: BenchmarkResult) -> pd.DataFrame:
    """Per human trace: holes on the grid and good exposures by each budget, replayed under the cost model and on
    the trace's own clock (as recorded, and with pauses over an hour cut)."""
    good = result.summary.set_index(["agent", "budget"])["good_mean"]
    rows = []
    for human in result.humans:
        row = {"trace": human}
        clock = result.real_clock[result.real_clock["trace"] == human]
        row["holes on grid"] = len(clock) if len(clock) else np.nan
        for budget in result.budgets:
            row[f"{budget:g} min, cost model"] = good[(human, budget)]
        for budget in result.budgets:
            row[f"{budget:g} min, own clock"] = _good_at(clock, "minutes", budget) if len(clock) else np.nan
        for budget in result.budgets:
            row[f"{budget:g} min, own clock, pauses cut"] = (_good_at(clock, "active_minutes", budget)
                                                            if len(clock) else np.nan)
        rows.append(row)
    return pd.DataFrame(rows).set_index("trace")


def _ranking_table(result: BenchmarkResult) -> pd.DataFrame:
    rank = result.ranking.copy()
    columns = {}
    for budget in result.budgets:
        at = rank[rank["budget"] == budget].set_index("agent")
        columns[f"{budget:g} min: share of oracle"] = at["share_of_oracle"].map(lambda v: f"{100 * v:.0f}%")
        if len(result.humans) >= 2:
            columns[f"{budget:g} min: human percentile"] = at["human_percentile"].map(lambda v: f"{v:.0f}")
    return pd.DataFrame(columns)


def _overlap_table(result: BenchmarkResult) -> pd.DataFrame:
    mean = result.overlap.groupby(["agent", "budget"], sort=False)["jaccard_mean"].mean().unstack("budget")
    mean.columns = [f"{b:g} min" for b in mean.columns]
    return mean


def _movement_table(result: BenchmarkResult) -> pd.DataFrame:
    budget = max(result.budgets)
    at = result.summary[result.summary["budget"] == budget].set_index("agent").reindex(result.agents + result.humans)
    table = at[["exposures_mean", "hole_switches", "patch_switches", "square_switches", "tile_switches",
                "decision_ms"]].copy()
    table.columns = ["exposures", "hole moves", "patch moves", "square moves", "tile moves", "ms / decision"]
    return table


def _published_table(result: BenchmarkResult) -> pd.DataFrame:
    rows = dict(result.published["rows"])
    good = result.summary.set_index(["agent", "budget"])["good_mean"]
    for agent in result.agents + result.humans:
        rows[f"{agent} (cryorl, this run)"] = {b: good.get((agent, float(b)), np.nan)
                                               for b in next(iter(result.published["rows"].values()))}
    table = pd.DataFrame(rows).T
    table.columns = [f"{b:g} min" for b in table.columns]
    return table


def render_markdown(result: BenchmarkResult) -> str:
    """The text of ``report.md``."""
    atlas = result.atlas
    good = float(atlas.is_good(result.threshold).mean())
    c = result.costs
    budget = max(result.budgets)
    lines = [f"# cryorl benchmark: {result.grid}", ""]
    lines += [f"- **Grid**: {len(atlas):,} holes in {atlas.n_patches} patches, {atlas.n_squares} squares, "
              f"{atlas.n_tiles} atlas tiles; {100 * good:.1f}% of holes have CTFMaxRes ≤ "
              f"{result.threshold:g} Å.",
              f"- **Costs** ({c.name or 'custom'}): {c.hole:g} / {c.patch:g} / {c.square:g} / {c.tile:g} minutes "
              "per move to another hole in the patch / patch / square / atlas tile.",
              f"- **Episodes**: {result.episodes} random start holes per budget (the same for every agent: "
              f"`reset(seed={result.seed} + i)`); budgets {', '.join(f'{b:g}' for b in result.budgets)} minutes. "
              "A human trace is one episode from its own first hole."]
    if result.command:
        lines.append(f"- **Command**: `{result.command}`")
    lines += ["", "## Good exposures", "",
              "Mean ± std over the starts (human traces: a single replay under the cost model).", "",
              markdown_table(result.headline()), ""]
    if result.published:
        lines += ["## Published figures in this setting", "", f"Source: {result.published['source']}. The "
                  "published rows are quoted from the paper, not computed here.", "",
                  markdown_table(_published_table(result)), ""]
    lines += ["## Against the oracle and the human operators", "",
              "Share of the oracle's good exposures (the oracle is greedy-local on the *true* CTFMaxRes, a "
              "reference that no deployable agent can see)" + (
                  ", and the percentile an agent's mean would take among the human traces replayed under the "
                  "same cost model (100: above all of them; ties count half)." if len(result.humans) >= 2 else
                  ". With a single human trace no percentile is given: compare with its row above."
                  if result.humans else "."), "",
              markdown_table(_ranking_table(result)), ""]
    if result.humans:
        lines += ["### Human traces", "",
                  "Good exposures of each trace replayed under the cost model, and on its own clock: as recorded, "
                  "and with pauses over an hour (breaks, other work) cut to the trace's median gap.", "",
                  markdown_table(human_table(result), float_format="{:.0f}"), "",
                  "### Overlap with the human's holes", "",
                  "Jaccard index |A ∩ H| / |A ∪ H| of the holes an agent exposed and those a human trace exposed "
                  "in the same budget (mean over starts and traces).", "",
                  markdown_table(_overlap_table(result), float_format="{:.2f}"), ""]
    lines += [f"## How they move ({budget:g}-minute budget)", "",
              "Mean exposures and moves by level per episode; mean decision time per step (CPU, one torch "
              "thread).", "", markdown_table(_movement_table(result), float_format="{:.1f}"), ""]
    lines += ["## Figures", ""]
    for name, title in FIGURES.items():
        lines += [f"### {title}", "", f"![{title}]({name})", ""]
    lines += result.notes
    return "\n".join(lines).rstrip() + "\n"


def write_report(result: BenchmarkResult, out: str | os.PathLike, steps: bool = True) -> Path:
    """Write ``report.md``, the figures and ``summary.csv``, ``ranking.csv``, ``overlap.csv``, ``human_clock.csv``
    (and ``steps.csv.gz``, one row per step, when ``steps``) into ``out``; returns the report's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    budget = max(result.budgets)
    save_figure(plot_cumulative_good(result.steps, budget, result.humans, result.real_clock),
                out / "cumulative_good.png")
    save_figure(plot_ctf_histograms(result.steps, budget, result.threshold, result.humans),
                out / "ctf_histograms.png")
    save_figure(plot_paths(result.atlas, result.steps, budget, result.threshold, humans=result.humans),
                out / "paths.png")
    tables = {"summary.csv": result.summary, "ranking.csv": result.ranking, "overlap.csv": result.overlap,
              "human_clock.csv": result.real_clock}
    if steps:
        tables["steps.csv.gz"] = result.steps
    for name, frame in tables.items():
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g",
                         compression="gzip" if name.endswith(".gz") else None)
    return atomic_write_text(out / "report.md", render_markdown(result))


def _grid_and_traces(data, split, era, ctf, grid_seed: int, trace_files: Sequence, operators: int | None,
                     operator_costs: str, threshold: float):
    """The benchmark's grid (``data``'s measured holes, or the simulated grid ``grid_seed``), its label, the human
    traces (``trace_files``, else the grid's own trace) and the simulated operators added to them."""
    from cryorl.formats import open_grid
    from cryorl.human import load_human_trace, simulate_operator

    traces = [load_human_trace(path) for path in trace_files]
    if data is not None:
        opened = open_grid(data, split, measured=True, era=era, ctf=ctf)
        atlas, label = opened.atlas, opened.label
        if not trace_files and opened.trace is not None:
            traces.append(opened.human_trace("human operator"))
    else:
        from cryorl.synth import simulate_atlas

        atlas = simulate_atlas(grid_seed)
        label = f"built-in simulated grid (seed {grid_seed})"
    operators = operators if operators is not None else (0 if traces else 10)
    traces += [simulate_operator(atlas, seed, costs=operator_costs, threshold=threshold,
                                 name=f"simulated operator {seed}") for seed in range(operators)]
    return atlas, label, traces, operators


def benchmark_report(out: str | os.PathLike = "benchmark_report", *, data: str | os.PathLike | None = None,
                     ctf: str | os.PathLike | None = None, split: str | None = None, era: str | None = None,
                     grid_seed: int = 0, agents: Sequence[str] | None = None, trace: Sequence = (),
                     operators: int | None = None, operator_costs: str = "aldolase-timestamps",
                     budgets: Sequence[float] = (120, 240, 480), episodes: int = 50, seed: int = 0,
                     costs: str = "cryorl-2023", threshold: float = 6.0, published: str | None = None,
                     overwrite: bool = False, steps: bool = True, progress: bool = True, threads: int = 1,
                     command: str = "") -> BenchmarkResult:
    """``cryorl benchmark``: ``agents`` (default :data:`~cryorl.reporting.benchmark.DEFAULT_AGENTS`; the oracle is
    always added) and the human traces (the files ``trace``, else the grid's own; plus ``operators`` simulated
    operators, default 10 when there is no trace) on the measured holes of ``data`` or the simulated grid
    ``grid_seed``, written as a report folder ``out`` (:func:`write_report`; replaced only with ``overwrite``);
    returns the result."""
    import torch

    from cryorl.agents import make_policy
    from cryorl.agents.evaluation import check_budgets, check_distinct, check_episodes
    from cryorl.agents.registry import agent_paths
    from cryorl.outputs import check_output_folder, output_folder
    from cryorl.reporting.benchmark import DEFAULT_AGENTS, run_benchmark

    agents = list(DEFAULT_AGENTS if agents is None else agents)
    check_distinct(agents, "--agents")
    budgets, episodes = check_budgets(budgets), check_episodes(episodes)
    if operators is not None and operators < 0:
        raise ValueError(f"--operators must be 0 or more, not {operators}")
    inputs = [data, ctf, *trace, *agent_paths(agents)]
    check_output_folder(out, overwrite=overwrite, what="report", inputs=inputs)
    torch.set_num_threads(threads)
    atlas, grid, traces, operators = _grid_and_traces(data, split, era, ctf, grid_seed, trace, operators,
                                                      operator_costs, threshold)
    policies = [make_policy(agent, seed=seed) for agent in agents]
    with output_folder(out, overwrite=overwrite, what="report", inputs=inputs) as folder:
        result = run_benchmark(atlas, agents=policies, traces=traces, budgets=budgets, episodes=episodes,
                               seed=seed, costs=costs, threshold=threshold, grid=grid, published=published,
                               progress=progress, command=command)
        if operators:
            result.notes.append(f"Human traces here are {operators} *simulated* operators "
                                f"(`cryorl.human.simulate_operator`, seeds 0-{operators - 1}; their own clock uses "
                                f"the `{operator_costs}` costs with jitter and breaks), not recordings.")
        write_report(result, folder, steps=steps)
    return result
