"""Training throughput on this machine: environment steps per second in each phase of `cryorl train`.

    python benchmarks/training_speed.py [--algos dqn ppo] [--timesteps 6000] [--threads 2] [--vec-env dummy subproc]

With the shipped hyper-parameters (agents/hyperparams/ALGO.yml; held-out evaluation and checkpoints switched off):

- imitation: labelled steps per second while DAgger collects from the training grids (planner signals included)
  and while it fits the network (steps of data per second of fitting, 1 epoch);
- RL: environment steps per second while SB3 learns (rollouts and updates, no held-out evaluation), with the
  copies of the environment in this process (`dummy`) or in subprocesses (`subproc`). DQN's first
  `learning_starts` steps only fill its replay buffer; its rate is reported with and without them. PPO's
  `--timesteps` is rounded up to whole rollouts (3,072 steps with the shipped config).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from cryorl.agents.imitation import collect, fit
from cryorl.agents.network import HoleScorer
from cryorl.agents.training import TrainingConfig, load_config, train, training_env_fns
from cryorl.resources import HYPERPARAMS_DIR as HYPERPARAMS


def imitation_rates(config: TrainingConfig, steps: int) -> dict:
    envs = [fn() for fn in training_env_fns(config.env)]
    scorer = HoleScorer(hidden=config.hidden)
    started = time.perf_counter()
    demonstrations = collect(envs, None, steps, gamma=config.gamma)
    collected = time.perf_counter() - started
    started = time.perf_counter()
    fit(scorer, demonstrations, loss="q" if config.algo == "dqn" else "policy", epochs=1.0)
    fitted = time.perf_counter() - started
    return {"imitation: collect steps/s": len(demonstrations) / collected,
            "imitation: fit steps/s": len(demonstrations) / fitted}


def _seconds_to_train(config: TrainingConfig, timesteps: int) -> float:
    """Wall seconds of a quiet `train` run of ``timesteps`` RL steps in a throw-away folder."""
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        train(config, Path(run_dir) / "run", timesteps=timesteps, progress_bar=False, log=lambda *_: None)
        return time.perf_counter() - started


def rl_rate(config: TrainingConfig, timesteps: int, vec_env: str) -> dict:
    config = replace(config, env=replace(config.env, vec_env=vec_env), imitation=None,       # no held-out grid:
                     eval=replace(config.eval, freq=10**9, grid_seeds=(), data=None), checkpoint_freq=10**9)
    full = _seconds_to_train(config, timesteps)
    rates = {f"RL ({vec_env}): steps/s whole run": timesteps / full}
    if config.algo == "dqn":                       # PPO learns in whole rollouts from its first step: no warm-up
        warmup = int(config.hyperparameters.get("learning_starts", 0))
        learning = (full - _seconds_to_train(config, max(warmup, 1))) / max(timesteps - warmup, 1)
        rates[f"RL ({vec_env}): steps/s learning phase"] = 1.0 / learning if learning > 0 else float("nan")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["dqn", "ppo"])
    parser.add_argument("--timesteps", type=int, default=6000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vec-env", nargs="+", default=["dummy", "subproc"], choices=["dummy", "subproc"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for algo in args.algos:
        config = load_config(HYPERPARAMS / f"{algo}.yml")
        row = {"algo": algo, "copies of the env": len(config.env.sources), "torch threads": args.threads,
               **imitation_rates(config, args.timesteps)}
        for vec_env in args.vec_env:
            row.update(rl_rate(config, args.timesteps, vec_env))
        rows.append(row)
    print(pd.DataFrame(rows).set_index("algo").T.to_string(float_format=lambda v: f"{v:.0f}"))


if __name__ == "__main__":
    main()
