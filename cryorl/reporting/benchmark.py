"""Benchmarks: every agent, the oracle and human traces on one grid, through one evaluation loop.

:func:`run_benchmark` evaluates each agent over seeded random starts at each budget, replays each human trace
under the same cost model (one episode per budget: a trace starts at its own first hole), puts the traces on
their own clock, and derives the comparison tables: where each agent ranks among the human traces (percentile),
its share of the oracle's good exposures, and the Jaccard overlap of its holes with each human's.
:func:`cryorl.reporting.report.write_report` turns the result into a report folder.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cryorl.agents import Policy, evaluate_policy, make_policy, summarize
from cryorl.agents.baselines import HumanTracePolicy
from cryorl.agents.evaluation import check_budgets
from cryorl.agents.registry import policy_entries
from cryorl.atlas import Atlas
from cryorl.costs import CollectionCosts, get_costs
from cryorl.env import CryoEMEnv
from cryorl.human import HumanTrace, jaccard, percentile_rank, real_clock
from cryorl.reporting.published import PUBLISHED

__all__ = ["run_benchmark", "BenchmarkResult", "DEFAULT_AGENTS", "PUBLISHED"]

DEFAULT_AGENTS = tuple(entry.name for entry in policy_entries() if entry.benchmark)
"""The agents a benchmark runs by default: every registered policy marked ``benchmark`` (the oracle is added
always)."""

@dataclass
class BenchmarkResult:
    """Everything a report needs. ``steps``/``summary`` hold agents and human-trace replays alike (a trace's
    ``agent`` is its name; ``humans`` lists those names, ``agents`` the others in the order they ran)."""

    atlas: Atlas
    grid: str
    costs: CollectionCosts
    threshold: float
    budgets: list[float]
    episodes: int
    seed: int
    steps: pd.DataFrame
    summary: pd.DataFrame
    humans: list[str]
    agents: list[str]
    real_clock: pd.DataFrame
    ranking: pd.DataFrame
    overlap: pd.DataFrame
    published: dict | None = None
    command: str = ""
    notes: list[str] = field(default_factory=list)

    def headline(self) -> pd.DataFrame:
        """Mean ± std good exposures: rows agents then human traces, columns budgets (strings)."""
        table = self.summary.assign(cell=[f"{m:.1f} ± {s:.1f}" if np.isfinite(s) else f"{m:.0f}"
                                          for m, s in zip(self.summary.good_mean, self.summary.good_std)])
        wide = table.pivot(index="agent", columns="budget", values="cell")
        wide = wide.reindex(self.agents + self.humans)
        wide.columns = [f"{b:g} min" for b in wide.columns]
        return wide


def _trace_replays(traces: Sequence[HumanTrace], env: CryoEMEnv, budgets, seed: int) -> list[pd.DataFrame]:
    return [evaluate_policy(HumanTracePolicy(trace, name=trace.name), env, episodes=1, seed=seed,
                            budgets=budgets) for trace in traces]


def _holes_by_episode(steps: pd.DataFrame) -> dict[tuple, set]:
    return {key: set(frame["hole"]) for key, frame in steps.groupby(["agent", "budget", "episode"])}


def _compare(summary: pd.DataFrame, steps: pd.DataFrame, agents: list[str], humans: list[str],
             budgets: list[float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    good = summary.set_index(["agent", "budget"])["good_mean"]
    rows, overlaps = [], []
    holes = _holes_by_episode(steps)
    for agent in agents:
        for budget in budgets:
            value = good[(agent, budget)]
            human_values = [good[(h, budget)] for h in humans]
            oracle = good.get(("oracle", budget), np.nan)
            rows.append({"agent": agent, "budget": budget, "good_mean": value,
                         "share_of_oracle": value / oracle if oracle else np.nan,
                         # a percentile among fewer than two traces says only "above" or "below"
                         "human_percentile": percentile_rank(value, human_values) if len(humans) >= 2 else np.nan,
                         "human_median": float(np.median(human_values)) if humans else np.nan})
            episodes = [k for k in holes if k[0] == agent and k[1] == budget]
            for human in humans:
                reference = holes[(human, budget, 0)]
                values = [jaccard(holes[k], reference) for k in episodes]
                overlaps.append({"agent": agent, "budget": budget, "trace": human,
                                 "jaccard_mean": float(np.mean(values)), "jaccard_max": float(np.max(values))})
    return pd.DataFrame(rows), pd.DataFrame(overlaps, columns=["agent", "budget", "trace", "jaccard_mean",
                                                               "jaccard_max"])


def run_benchmark(atlas: Atlas | None = None, *, agents: Sequence[str | Policy] = DEFAULT_AGENTS,
                  traces: Sequence[HumanTrace] = (), budgets: Sequence[float] = (120, 240, 480),
                  episodes: int = 50, seed: int = 0, costs: str | CollectionCosts = "cryorl-2023",
                  threshold: float = 6.0, grid: str | None = None, grid_seed: int = 0,
                  published: str | None = None, progress: bool = True, command: str = "") -> BenchmarkResult:
    """Evaluate ``agents`` (names or policies; the oracle is always added) and replay ``traces`` on ``atlas``
    (None: the built-in simulated grid of ``grid_seed``) under ``costs``; see the module docstring."""
    from tqdm import tqdm

    env = CryoEMEnv(atlas, costs=costs, threshold=threshold) if atlas is not None else \
        CryoEMEnv(costs=costs, threshold=threshold, grid_seed=grid_seed)
    env.reset(seed=seed)
    atlas = env.atlas
    budgets = check_budgets(budgets)
    policies = [a if isinstance(a, Policy) else make_policy(a, seed=seed) for a in agents]
    names = [p.name for p in policies]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"agent {repeated[0]!r} is listed twice; each agent is evaluated once")
    if "oracle" not in names:
        policies.append(make_policy("oracle"))
    humans = [trace.name for trace in traces]
    if len(set(humans)) != len(humans):
        raise ValueError(f"human traces need distinct names, got {humans}")
    for trace in traces:
        if len(trace.on(atlas)) < 2:
            raise ValueError(f"human trace {trace.name!r} ({trace.source or len(trace)} holes) has "
                             f"{len(trace.on(atlas))} of its holes on this grid ({atlas.source or 'the grid'}): "
                             "nothing to compare; is it a trace of another session?")
    frames, decision_ms = [], {}
    bar = tqdm(policies, desc="agents", unit="agent", disable=not progress)
    for policy in bar:
        bar.set_postfix_str(policy.name)
        steps = evaluate_policy(policy, env, episodes=episodes, seed=seed, budgets=budgets, progress=progress)
        decision_ms.update(steps.attrs["decision_ms"])
        frames.append(steps)
    frames += _trace_replays(traces, env, budgets, seed)
    steps = pd.concat(frames, ignore_index=True)
    summary = summarize(steps, decision_ms)
    clocks = [real_clock(trace, atlas, threshold).assign(trace=trace.name) for trace in traces
              if trace.minutes is not None]
    clock = pd.concat(clocks, ignore_index=True) if clocks else pd.DataFrame(
        columns=["hole", "minutes", "active_minutes", "ctf", "good", "good_cumulative", "trace"])
    names = [p.name for p in policies]
    ranking, overlap = _compare(summary, steps, names, humans, budgets)
    if published is not None and published not in PUBLISHED:
        raise ValueError(f"no published figures named {published!r}; known: {', '.join(PUBLISHED)}")
    return BenchmarkResult(atlas=atlas, grid=grid or atlas.source or "simulated", costs=get_costs(costs),
                           threshold=threshold, budgets=budgets, episodes=episodes, seed=seed, steps=steps,
                           summary=summary, humans=humans, agents=names, real_clock=clock, ranking=ranking,
                           overlap=overlap,
                           published=PUBLISHED[published] if published else None, command=command)
