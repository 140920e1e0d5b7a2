"""Training throughput: environment steps per second while SB3 trains each learned agent on this machine.

    python benchmarks/training_speed.py [--algos dqn ppo] [--timesteps 6000] [--threads 2]

Runs `cryorl.agents.training.train` with the shipped hyper-parameters (agents/hyperparams/ALGO.yml; held-out
evaluation switched off) in a temporary folder. DQN's first `learning_starts` steps only fill the replay buffer,
so the script reports the rate with and without that warm-up.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from cryorl.agents.training import load_config, train

from cryorl.resources import HYPERPARAMS_DIR as HYPERPARAMS


def throughput(algo: str, timesteps: int) -> dict:
    config = load_config(HYPERPARAMS / f"{algo}.yml")
    config["eval"] = {**config.get("eval", {}), "freq": 10**9}
    config["checkpoint_freq"] = 10**9
    warmup = int(config.get("learning_starts", 0)) if algo == "dqn" else 0
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        train(config, Path(run_dir) / "warmup", timesteps=max(warmup, 1), progress_bar=False, log=lambda *_: None)
        warm = time.perf_counter() - started
        started = time.perf_counter()
        train(config, Path(run_dir) / "full", timesteps=timesteps, progress_bar=False, log=lambda *_: None)
        full = time.perf_counter() - started
    learning = (full - warm) / max(timesteps - warmup, 1)
    return {"algo": algo, "timesteps": timesteps, "wall (s)": full, "env steps/s (whole run)": timesteps / full,
            "env steps/s (learning phase)": 1.0 / learning if learning > 0 else float("nan"),
            "copies of the env": len(config["env"].get("sources", [{}])), "torch threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["dqn", "ppo"])
    parser.add_argument("--timesteps", type=int, default=6000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [throughput(algo, args.timesteps) for algo in args.algos]
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.1f}"))


if __name__ == "__main__":
    main()
