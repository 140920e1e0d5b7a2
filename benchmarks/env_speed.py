"""Step and reset time of CryoEM-v0 by grid size and feature set (median over many steps).

    python benchmarks/env_speed.py [--sizes 1000 2341 10000 50000] [--steps 500]

Actions are drawn beforehand (a random order of holes), so only the environment is timed. Times are also given as
a ratio to a reference timed in the same run, Gymnasium's CartPole-v1 step ("× CartPole"), so that figures from a
busy or a slow machine compare.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from cryorl import CryoEMEnv
from cryorl.synth import GridSpec, simulate_atlas


def cartpole_step_seconds(steps: int = 2000) -> float:
    """Median seconds of one CartPole-v1 step (the reference of this benchmark)."""
    import gymnasium as gym

    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    durations = np.empty(steps)
    for i in range(steps):
        start = time.perf_counter()
        _, _, done, _, _ = env.step(i % 2)
        durations[i] = time.perf_counter() - start
        if done:
            env.reset()
    return float(np.median(durations))


def time_env(n_holes: int, feature_set: str, steps: int, seed: int = 0) -> dict:
    atlas = simulate_atlas(seed, GridSpec.with_holes(n_holes))
    env = CryoEMEnv(atlas, feature_set=feature_set, budget=1e9)
    resets = []
    for k in range(5):
        start = time.perf_counter()
        env.reset(seed=k)
        resets.append(time.perf_counter() - start)
    _, info = env.reset(seed=seed)
    order = np.random.default_rng(seed).permutation(np.flatnonzero(info["action_mask"]))[:steps]
    durations = np.empty(len(order))
    for i, action in enumerate(order):
        start = time.perf_counter()
        env.step(int(action))
        durations[i] = time.perf_counter() - start
    return {"holes": n_holes, "feature set": feature_set, "steps/s": 1.0 / np.median(durations),
            "step median (ms)": np.median(durations) * 1e3,
            "step p90 (ms)": np.percentile(durations, 90) * 1e3, "reset median (ms)": np.median(resets) * 1e3,
            "steps timed": len(order)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2341, 10000, 50000])
    parser.add_argument("--feature-sets", nargs="+", default=["compact", "cryorl"])
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    reference = cartpole_step_seconds()
    rows = [time_env(n, fs, args.steps if n <= 10000 else max(args.steps // 5, 20))
            for fs in args.feature_sets for n in args.sizes]
    table = pd.DataFrame(rows)
    table["step (× CartPole)"] = table["step median (ms)"] / (reference * 1e3)
    print(f"reference: a CartPole-v1 step takes {reference * 1e3:.4f} ms on this machine now")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
