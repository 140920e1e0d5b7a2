"""Decision latency of each agent by grid size: median milliseconds per `act` on simulated grids.

    python benchmarks/decision_latency.py [--agents random greedy-local planner dqn ppo] [--sizes 2341 10000]

One torch thread (what `cryorl evaluate` uses); the environment's own step time is not included.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from cryorl import CryoEMEnv, simulate_atlas
from cryorl.agents import make_policy
from cryorl.synth import GridSpec

AGENTS = ["random", "predict-rank", "greedy-local", "snowball", "planner", "oracle", "dqn", "ppo"]


def latency(agent: str, sizes=(2341, 10000), steps: int = 50) -> dict[str, float]:
    """Median milliseconds per decision at each grid size, over ``steps`` decisions from a seeded start."""
    result = {}
    for n in sizes:
        env = CryoEMEnv(simulate_atlas(0, GridSpec.with_holes(n)), budget=480)   # a planner plans for it
        policy = make_policy(agent, seed=0)
        obs, _ = env.reset(seed=0)
        policy.reset(env)
        times = []
        for _ in range(steps):
            tic = time.perf_counter()
            action = policy.act(obs, obs["action_mask"])
            times.append(time.perf_counter() - tic)
            obs, *_ = env.step(action)
        result[f"ms/decision @{n}"] = float(np.median(times) * 1e3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", default=AGENTS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2341, 10000])
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = pd.DataFrame({agent: latency(agent, args.sizes, args.steps) for agent in args.agents}).T
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
