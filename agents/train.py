"""Train a learned collection agent (masked DQN or MaskablePPO) on CryoEM-v0.

    python agents/train.py --algo dqn                       # hyper-parameters from agents/hyperparams/dqn.yml
    python agents/train.py --algo ppo --timesteps 20000 --run-dir runs/ppo-quick
    python agents/train.py --algo dqn --run-dir runs/dqn    # run again after an interruption: it resumes

Everything a run needs is in the YAML file: training grids (simulated, resampled every episode, and/or parts of a
real split), the episode budgets, SB3 hyper-parameters, held-out evaluation grids. The run folder gets TensorBoard
logs (tb/), checkpoints, eval.csv (good exposures on the held-out grids), best/ and policy/ (plain weights that
`cryorl evaluate --agent PATH` loads on any grid size).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from cryorl.agents.training import load_config, train

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=["dqn", "ppo"], default="dqn")
    parser.add_argument("--config", type=Path, default=None, help="YAML (default agents/hyperparams/ALGO.yml)")
    parser.add_argument("--run-dir", type=Path, default=None, help="default runs/ALGO-seedN")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, default=None, help="override n_timesteps")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = load_config(args.config or HERE / "hyperparams" / f"{args.algo}.yml")
    run_dir = args.run_dir or Path("runs") / f"{config['algo']}-seed{args.seed}"
    policy = train(config, run_dir, seed=args.seed, timesteps=args.timesteps, progress_bar=not args.no_progress)
    print(f"trained {policy.name}: {policy.metadata}; policy in {run_dir / 'policy'}, best in {run_dir / 'best'}")


if __name__ == "__main__":
    main()
