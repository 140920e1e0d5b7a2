"""Replay a session online: take the plan's first target, "measure" it (its CTFMaxRes from the session's files),
append it to the measured file, re-plan; until the budget is spent. Then compare with `cryorl evaluate`.

    python benchmarks/replay_session.py --data data_samples/session --split sample --budget 30 --out replay/
    python benchmarks/replay_session.py --budget 480 --out replay-sim/      # the built-in 2,341-hole grid

Writes `measured.csv` (`hole,ctf`, what the session collected, in order), `plan.csv`/`plan.nav` or
`targets.txt` (the last plan) and `replanning.csv` (seconds per re-plan), and prints the collection beside the one
`cryorl evaluate` makes from the same start, and the re-planning time.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from cryorl import load_cryorl_dataset, simulate_atlas
from cryorl.agents import evaluate_policy, make_policy
from cryorl.outputs import output_folder
from cryorl.planning import SessionOver, make_plan, read_measured
from cryorl.stage import read_stage_positions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="a CryoRL-format session (default: simulated)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--agent", default="planner")
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("--costs", default="cryorl-2023")
    parser.add_argument("--seed", type=int, default=0, help="the start hole is evaluate's for this seed")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    if args.data is not None:
        atlas = load_cryorl_dataset(args.data, args.split)
        table = args.data / "holes.csv"
        stage = read_stage_positions(table, atlas) if table.exists() else None
    else:
        atlas, stage = simulate_atlas(0), None
    evaluated = evaluate_policy(make_policy(args.agent), atlas, episodes=1, seed=args.seed, budgets=[args.budget],
                                costs=args.costs)
    start = evaluated["hole"].iloc[0]
    policy = make_policy(args.agent)
    with output_folder(args.out, overwrite=args.overwrite, what="replay") as out:
        measured_file = out / "measured.csv"
        measured_file.write_text("hole,ctf\n")
        seconds, plan = [], None
        while True:
            tic = time.perf_counter()
            try:
                next_plan = make_plan(atlas, policy, budget=args.budget, costs=args.costs, start=start,
                                      measured=read_measured(measured_file, atlas), stage=stage)
            except SessionOver:
                break
            seconds.append(time.perf_counter() - tic)
            plan = next_plan
            target = plan.targets["hole"].iloc[0]
            with open(measured_file, "a") as handle:
                handle.write(f"{target},{atlas.true_ctf[atlas.index(target)]:g}\n")
        if plan is not None:
            plan.write(out)
        pd.DataFrame({"replan": range(1, len(seconds) + 1), "seconds": seconds}).to_csv(out / "replanning.csv",
                                                                                         index=False)
    collected = pd.read_csv(args.out / "measured.csv")
    same = collected["hole"].tolist() == evaluated["hole"].iloc[1:].tolist()
    good = int((collected["ctf"] <= 6.0).sum())
    print(f"{args.agent} from {start}, {args.budget:g} min: {len(collected)} exposures, {good} good; "
          f"cryorl evaluate: {int(evaluated['good'].sum())} good — the same holes in the same order: {same}")
    print(f"re-planning ({len(atlas)} holes): mean {1e3 * sum(seconds) / max(len(seconds), 1):.0f} ms, "
          f"max {1e3 * max(seconds, default=0):.0f} ms over {len(seconds)} re-plans")


if __name__ == "__main__":
    main()
