"""Steps per second of ``gymnasium.make_vec("CryoEM-v0", ...)``: the native vector environment against Gymnasium's
sync and async wrappers, in the same run.

    python benchmarks/vector_speed.py [--envs 4 16] [--holes 2341] [--steps 300] [--repeats 3]

Every mode runs the same task — simulated grids of ``--holes`` holes, the default 480-minute budget, so episodes
end and autoreset during the timing as they do in training — with the same policy, a random unvisited hole drawn
from ``info["action_mask"]`` outside the timed region; only ``step()`` is timed. Steps/s counts sub-environment
steps (``num_envs`` per ``step()``); each figure is the median over ``--repeats`` runs of ``--steps`` calls, and
the ratios compare modes timed in this run, so figures from a busy machine still compare.
"""
from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym
import numpy as np
import pandas as pd

import cryorl  # noqa: F401  (registers CryoEM-v0)
from cryorl.synth import GridSpec

MODES = ("vector_entry_point", "sync", "async")


def steps_per_second(mode: str, num_envs: int, n_holes: int, steps: int, repeats: int, seed: int = 0) -> float:
    """Median sub-environment steps per second of ``repeats`` runs of ``steps`` calls to ``step()``."""
    envs = gym.make_vec("CryoEM-v0", num_envs=num_envs, vectorization_mode=mode, grid=GridSpec.with_holes(n_holes))
    rng = np.random.default_rng(seed)
    _, info = envs.reset(seed=seed)
    rates = []
    for _ in range(repeats):
        seconds = 0.0
        for _ in range(steps):
            mask = info["action_mask"]
            actions = np.argmax(np.where(mask, rng.random(mask.shape), -1.0), axis=1)
            start = time.perf_counter()
            _, _, _, _, info = envs.step(actions)
            seconds += time.perf_counter() - start
        rates.append(num_envs * steps / seconds)
    envs.close()
    return float(np.median(rates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, nargs="+", default=[4, 16], help="num_envs values")
    parser.add_argument("--holes", type=int, default=2341, help="holes per simulated grid")
    parser.add_argument("--steps", type=int, default=300, help="step() calls per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting (the median is reported)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    rows = []
    for num_envs in args.envs:
        row = {"num_envs": num_envs, "holes": args.holes}
        for mode in args.modes:
            row[f"{mode} (steps/s)"] = steps_per_second(mode, num_envs, args.holes, args.steps, args.repeats)
        native = row.get("vector_entry_point (steps/s)")
        for mode in ("sync", "async"):
            if native is not None and f"{mode} (steps/s)" in row:
                row[f"× {mode}"] = native / row[f"{mode} (steps/s)"]
        rows.append(row)
    print(f"{os.cpu_count()} CPU cores visible; {args.steps} step() calls × {args.repeats} runs per setting")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:,.1f}"))


if __name__ == "__main__":
    main()
