"""The evaluation loop every policy goes through: seeded random starts, one episode per start and budget.

Episode ``i`` starts from the hole drawn by ``reset(seed=seed + i)``, so every policy sees the same starts (a
policy with its own start, like a human trace, keeps it). Each budget is a separate episode with that budget
(``reset(options={"budget": …})``): policies that look at the time left can plan for it.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from cryorl.agents.base import Policy
from cryorl.atlas import Atlas
from cryorl.env import CryoEMEnv

__all__ = ["evaluate", "Evaluation", "evaluate_policy", "summarize", "check_budgets", "check_episodes",
           "check_distinct", "evaluate_agents", "TRAJECTORY_COLUMNS", "SUMMARY_COLUMNS"]

TRAJECTORY_COLUMNS = ["agent", "budget", "episode", "seed", "step", "hole", "elapsed", "switch_level", "ctf",
                      "predicted_ctf", "good", "reward"]
SUMMARY_COLUMNS = ["agent", "budget", "episodes", "good_mean", "good_std", "exposures_mean", "exposures_std",
                   "reward_mean", "reward_std", "hole_switches", "patch_switches", "square_switches",
                   "tile_switches", "decision_ms"]


def _as_env(env_or_atlas, **env_kwargs) -> CryoEMEnv:
    if isinstance(env_or_atlas, Atlas):
        return CryoEMEnv(env_or_atlas, **env_kwargs)
    if env_or_atlas is None:
        return CryoEMEnv(**env_kwargs)
    return env_or_atlas.unwrapped


def evaluate_policy(policy: Policy, env_or_atlas: CryoEMEnv | Atlas | None = None, *, episodes: int = 50,
                    seed: int = 0, budgets: Iterable[float] = (120, 240, 480), progress: bool = False,
                    **env_kwargs) -> pd.DataFrame:
    """Run ``policy`` for ``episodes`` seeded starts at each budget; one row per step (step 0 = start hole).

    Columns: ``agent, budget, episode, seed`` (of the episode's start), ``step, hole`` (name), ``elapsed``
    (minutes), ``switch_level`` (-1 for the start), ``ctf`` and ``predicted_ctf`` (Å), ``good`` (this step collected
    a good exposure: False at step 0 whatever its CTFMaxRes, since the start hole is where the microscope is, not
    an exposure, and earns nothing, as in the CryoRL papers), ``reward``. The mean decision time per budget is kept
    in ``df.attrs["decision_ms"]`` (``{(agent, budget): ms}``).
    """
    env = _as_env(env_or_atlas, **env_kwargs)
    budgets = check_budgets(budgets)
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, not {episodes!r}")
    rows: list[tuple] = []
    decisions: dict[float, list[float]] = {b: [] for b in budgets}
    runs = [(b, e) for b in budgets for e in range(episodes)]
    iterator = runs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(runs, desc=f"evaluating {policy.name}", unit="episode", leave=False)
    for budget, episode in iterator:
        options = {"budget": budget}
        env.reset(seed=seed + episode)           # the seeded start (and grid, for a simulated env)
        policy.reset(env)
        start = policy.start_hole(env)
        options["start"] = start if start is not None else env.current_hole
        obs, info = env.reset(options=options)
        policy.reset(env)
        good = env.atlas.is_good(env.threshold)
        rows.append((policy.name, budget, episode, seed + episode, 0, info["hole"], 0.0, -1, info["true_ctf"],
                     info["predicted_ctf"], False, 0.0))
        done, step = False, 0
        while not done:
            tic = time.perf_counter()
            action = policy.act(obs, obs["action_mask"])
            decisions[budget].append(time.perf_counter() - tic)
            obs, reward, done, truncated, info = env.step(action)
            done = done or truncated
            step += 1
            exposed = info["switch_level"] >= 0                 # not a penalised no-op (an invalid action)
            rows.append((policy.name, budget, episode, seed + episode, step, info["hole"], info["elapsed"],
                         info["switch_level"], info["true_ctf"], info["predicted_ctf"],
                         bool(exposed and good[info["hole_index"]]), reward))
    frame = pd.DataFrame(rows, columns=TRAJECTORY_COLUMNS)
    frame.attrs["decision_ms"] = {(policy.name, b): float(np.mean(d)) * 1e3 if d else float("nan")
                                  for b, d in decisions.items()}
    return frame


def check_budgets(budgets: Iterable[float]) -> list[float]:
    """Budgets in minutes as floats; each must be positive, finite and listed once (a repeat would count twice)."""
    values = [float(b) for b in budgets]
    if not values:
        raise ValueError("no budgets given: name at least one, in minutes")
    for value in values:
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"budget {value:g} is not a positive number of minutes")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"budget {repeated[0]:g} is listed twice; each budget is evaluated once")
    return values


def check_episodes(episodes: int) -> int:
    """A count of episodes: at least 1."""
    if episodes < 1:
        raise ValueError(f"--episodes must be at least 1, not {episodes}")
    return episodes


def check_distinct(values: Sequence, option: str) -> None:
    """Each of ``values`` (of the option ``option``) listed once: a repeat would be counted again."""
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{option} lists {value if isinstance(value, str) else format(value, 'g')} twice; "
                             "each would be counted again")
        seen.add(value)


def summarize(trajectories: pd.DataFrame, decision_ms: dict[str, float] | None = None) -> pd.DataFrame:
    """Per agent and budget (in order of appearance): episodes, mean ± std of good exposures, exposures and reward,
    mean switches by level, and the mean decision time per step at that budget (``decision_ms``:
    ``{(agent, budget): ms}``, default ``trajectories.attrs["decision_ms"]``)."""
    steps = trajectories[trajectories["step"] > 0]
    per_episode = steps.groupby(["agent", "budget", "episode"], sort=False).agg(
        good=("good", "sum"), exposures=("switch_level", lambda s: int((s >= 0).sum())), reward=("reward", "sum"),
        hole_switches=("switch_level", lambda s: int((s == 0).sum())),
        patch_switches=("switch_level", lambda s: int((s == 1).sum())),
        square_switches=("switch_level", lambda s: int((s == 2).sum())),
        tile_switches=("switch_level", lambda s: int((s == 3).sum())),
    ).reset_index()
    summary = per_episode.groupby(["agent", "budget"], sort=False).agg(
        episodes=("episode", "size"), good_mean=("good", "mean"), good_std=("good", "std"),
        exposures_mean=("exposures", "mean"), exposures_std=("exposures", "std"),
        reward_mean=("reward", "mean"), reward_std=("reward", "std"),
        hole_switches=("hole_switches", "mean"), patch_switches=("patch_switches", "mean"),
        square_switches=("square_switches", "mean"), tile_switches=("tile_switches", "mean"),
    ).reset_index()
    decision_ms = decision_ms if decision_ms is not None else trajectories.attrs.get("decision_ms", {})
    keys = zip(summary["agent"], summary["budget"])
    summary["decision_ms"] = np.array([decision_ms.get(key, np.nan) for key in keys], dtype=float)
    return summary[SUMMARY_COLUMNS]


class Evaluation(NamedTuple):
    """What :func:`evaluate` returns: ``steps`` (one row per step, :data:`TRAJECTORY_COLUMNS`) and ``summary``
    (one row per agent and budget, :data:`SUMMARY_COLUMNS`)."""

    steps: pd.DataFrame
    summary: pd.DataFrame


def evaluate(policy, env_or_atlas: CryoEMEnv | Atlas | None = None, *, episodes: int = 50, seed: int = 0,
             budgets: Iterable[float] = (120, 240, 480), progress: bool = False, **env_kwargs) -> Evaluation:
    """Evaluate one policy: ``episodes`` seeded random starts (episode ``i`` from ``reset(seed=seed + i)``) at
    each budget, on an environment, an Atlas, or (None) the built-in simulated grid.

    ``policy``: a :class:`~cryorl.agents.Policy`, an agent name for :func:`~cryorl.agents.make_policy` ("dqn",
    "greedy-local", a saved policy folder, ...) or a :class:`~cryorl.human.HumanTrace` (a trace always starts
    at its own first hole, so one episode per budget is enough). ``env_kwargs`` go to :class:`CryoEMEnv` (costs,
    threshold, grid_seed, ...). Returns ``Evaluation(steps, summary)``.
    """
    from cryorl.agents.baselines import HumanTracePolicy
    from cryorl.agents.registry import make_policy
    from cryorl.human import HumanTrace

    if isinstance(policy, HumanTrace):
        policy = HumanTracePolicy(policy)
    elif not isinstance(policy, Policy):
        policy = make_policy(policy, seed=seed)
    steps = evaluate_policy(policy, env_or_atlas, episodes=episodes, seed=seed, budgets=budgets,
                            progress=progress, **env_kwargs)
    return Evaluation(steps, summarize(steps))


def evaluate_agents(agents: Sequence[str], out: str | os.PathLike, *, data: str | os.PathLike | None = None,
                    ctf: str | os.PathLike | None = None, split: str | None = None, era: str | None = None,
                    grid_seed: int = 0, budgets: Iterable[float] = (120, 240, 480), episodes: int = 50,
                    seed: int = 0, costs: str = "cryorl-2023", threshold: float = 6.0, overwrite: bool = False,
                    progress: bool = True, threads: int = 1) -> Evaluation:
    """``cryorl evaluate``: each agent (a name of :func:`~cryorl.agents.make_policy`, a saved policy folder,
    ``NAME=PATH`` or ``human-trace:PATH``) over seeded random starts and each budget, on the measured holes of
    ``data`` (any grid :func:`~cryorl.formats.load_grid` opens) or the simulated grid ``grid_seed``; writes
    ``summary.csv`` and ``trajectories.csv`` into the folder ``out`` (replaced as a whole only with ``overwrite``)
    and returns them."""
    import torch

    from cryorl.agents.registry import agent_paths, make_policy
    from cryorl.formats import open_grid
    from cryorl.outputs import check_output_folder, output_folder

    agents, out = list(agents), Path(out)
    check_distinct(agents, "--agent")
    budgets, episodes = check_budgets(budgets), check_episodes(episodes)
    inputs = [data, ctf, *agent_paths(agents)]
    check_output_folder(out, overwrite=overwrite, what="evaluation", inputs=inputs)
    torch.set_num_threads(threads)
    env_kwargs = dict(costs=costs, threshold=threshold)
    if data is not None:
        env = CryoEMEnv(open_grid(data, split, measured=True, era=era, ctf=ctf).atlas, **env_kwargs)
    else:
        env = CryoEMEnv(grid_seed=grid_seed, **env_kwargs)
    policies = [make_policy(agent, seed=seed) for agent in agents]
    labels = [p.name for p in policies]
    repeated = [label for i, label in enumerate(labels) if label in labels[:i]]
    if repeated:
        raise ValueError(f"--agent: two agents are labelled {repeated[0]}; label a saved policy folder with "
                         "NAME=PATH")
    with output_folder(out, overwrite=overwrite, what="evaluation", inputs=inputs) as folder:
        frames, decision_ms = [], {}
        for policy in policies:
            trajectories = evaluate_policy(policy, env, episodes=episodes, seed=seed, budgets=budgets,
                                           progress=progress)
            decision_ms.update(trajectories.attrs["decision_ms"])
            frames.append(trajectories)
        trajectories = pd.concat(frames, ignore_index=True)
        summary = summarize(trajectories, decision_ms)
        summary.to_csv(folder / "summary.csv", index=False)
        trajectories.to_csv(folder / "trajectories.csv", index=False)
    return Evaluation(trajectories, summary)
