"""``make demo``: the collection task on the built-in simulated grid, played by a random policy.

It shows what the environment does end to end (episodes, budgets, the rendered map). The benchmark report with
the learned and baseline agents replaces it as the main job once those exist.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryorl.fileio import atomic_path

__all__ = ["run_demo"]


def run_demo(out: Path, seed: int = 0, episodes: int = 20, budgets=(120, 240, 480)) -> pd.DataFrame:
    import gymnasium as gym
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import cryorl  # noqa: F401  (registers CryoEM-v0)

    env = gym.make("CryoEM-v0", grid_seed=seed, budget=max(budgets), render_mode="rgb_array")
    atlas = env.unwrapped.atlas
    print(atlas)
    rng = np.random.default_rng(seed)
    rows = []
    for episode in range(episodes):
        _, info = env.reset(seed=seed + episode)
        done = False
        while not done:
            action = rng.choice(np.flatnonzero(info["action_mask"]))
            _, reward, done, _, info = env.step(action)
            rows.append({"episode": episode, "elapsed": info["elapsed"], "good": reward > 0})
    steps = pd.DataFrame(rows)
    summary = pd.DataFrame([
        {"budget (min)": budget,
         "good exposures (mean)": steps[steps.elapsed <= budget].groupby("episode").good.sum()
         .reindex(range(episodes), fill_value=0).mean()}
        for budget in budgets])
    out.mkdir(parents=True, exist_ok=True)
    image = env.render()
    with atomic_path(out / "random_episode_map.png") as tmp:
        plt.imsave(tmp, image, format="png")
    print(f"random policy, {episodes} episodes from random start holes on the simulated grid (seed {seed}):")
    print(summary.to_string(index=False))
    print(f"map of the last episode: {out / 'random_episode_map.png'}")
    return summary
