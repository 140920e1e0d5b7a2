"""Train a learned collection agent (masked DQN or MaskablePPO) on CryoEM-v0; the same as `cryorl train`.

    python agents/train.py --algo dqn                       # hyper-parameters from agents/hyperparams/dqn.yml
    python agents/train.py --algo ppo --timesteps 20000 --run-dir runs/ppo-quick
    python agents/train.py --algo ppo --timesteps 2000 --imitation-steps 0    # RL only, no imitation
    python agents/train.py --algo dqn --run-dir runs/dqn    # run again after an interruption: it resumes

Everything a run needs is in the YAML file: training grids (simulated, resampled every episode, and/or parts of a
real split), the episode budgets, SB3 hyper-parameters, held-out evaluation grids. The run folder gets TensorBoard
logs (tb/), checkpoints (the newest two, written atomically), eval.csv (good exposures on the held-out grids),
best/ and policy/ (plain weights that `cryorl evaluate --agent PATH` loads on any grid size). Checkpoints are SB3
zips, which unpickle Python objects when a run resumes: resume only run folders you made.
"""
from __future__ import annotations

import argparse
import sys

from cryorl.cli import add_train_arguments, main

if __name__ == "__main__":
    parser = add_train_arguments(argparse.ArgumentParser(description=__doc__,
                                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.parse_args()                                      # --help and bad options, with this script's name
    sys.exit(main(["train", *sys.argv[1:]]))
