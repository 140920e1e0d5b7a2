"""Ship a trained policy: copy it into agents/pretrained/NAME/ (cryorl/resources/pretrained) and write its card.

    python benchmarks/agents.py --agents runs/dqn-seed0/best planner greedy-local oracle --out bench/dqn
    python agents/ship.py --run runs/dqn-seed0 --name dqn --summary bench/dqn/summary.csv

The card states the training data (from the run's config), steps, wall time, seed, and the scores per budget and
held-out grid next to the baselines, all read from the run folder and the benchmark summary.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd

from cryorl.agents.learned import LearnedPolicy
from cryorl.fileio import atomic_write_text
from cryorl.outputs import output_folder
from cryorl.reporting.markdown import markdown_table
from cryorl.resources import PRETRAINED_DIR


def card(name: str, run: dict, policy: LearnedPolicy, summary: pd.DataFrame, agent_label: str, command: str,
         history: pd.DataFrame | None = None, imitation: pd.DataFrame | None = None) -> str:
    config = run["config"]
    reached = ""
    if history is not None and len(history):
        best = history.loc[history["good_mean"].idxmax()]
        reached = (f"; the best policy on the held-out grid came after {int(best['timesteps'])} RL steps and "
                   f"{best['wall_seconds']:.0f} s of RL")
        if "planner_good_mean" in history:
            trace = ", ".join(f"{int(r.timesteps)}: {r.good_mean:.1f}" for r in history.itertuples())
            reached += (f" (held-out good exposures by RL step — {trace}; the planner: "
                        f"{history['planner_good_mean'].iloc[0]:.1f})")
        if int(best["timesteps"]) == 0:
            reached += ". The shipped weights are the imitation's: RL did not improve on them on the held-out grid"
    imitated = []
    if imitation is not None and len(imitation):
        last = imitation.iloc[-1]
        imitated = [f"- imitation of the planner first (DAgger, {len(imitation)} rounds, {int(last['steps'])} "
                    f"labelled steps, {last['wall_seconds']:.0f} s): the network picks the planner's hole in "
                    f"{100 * last['agreement']:.1f} % of the states of its last training epoch; RL goes on from "
                    "there"]
    table = summary.copy()
    table["agent"] = table["agent"].replace({agent_label: name})
    wide = table.pivot_table(index=["grid", "agent"], columns="budget", values="good_mean")
    wide.columns = [f"{c:g} min" for c in wide.columns]
    gap = table[table.agent == name].pivot_table(index="grid", columns="budget", values="gap_closed")
    gap.columns = [f"{c:g} min" for c in gap.columns]
    episodes = int(summary["episodes"].min())
    lines = [
        f"# Model card: `{name}`", "",
        f"A {config['algo'].upper()} collection policy for `CryoEM-v0` (compact observation), one shared per-hole "
        "network (`cryorl.agents.network.HoleScorer`), usable on grids of any size. Load with "
        f"`cryorl.agents.make_policy('{name}')` or `cryorl evaluate --agent {name}`.", "",
        "## Training", "",
        f"- data: {json.dumps(config['env'].get('sources'))} (simulated grids are redrawn every episode; "
        "no evaluation grid below was seen in training)",
        f"- costs {config['env'].get('costs', 'cryorl-2023')}, threshold {config['env'].get('threshold', 6.0)} Å, "
        f"training episode budgets {config['env'].get('budgets', [480])} min, training reward minus "
        f"{config['env'].get('opportunity_cost', 0)} per minute",
        f"- steps: {policy.metadata.get('timesteps')} (best checkpoint on the held-out evaluation grid; run total "
        f"{run.get('timesteps')}), seed {run.get('seed')}, wall time {run.get('wall_seconds_this_run')} s on a "
        f"2-core CPU ({run.get('torch_threads')} torch threads, shared with other jobs){reached}",
        *imitated,
        f"- hyper-parameters: `agents/hyperparams/{config['algo']}.yml`", "",
        f"## Mean good exposures ({episodes} seeded random starts per budget)", "",
        markdown_table(wide), "",
        "Share of the greedy-local → oracle gap closed (negative: below greedy-local):", "",
        markdown_table(gap, float_format="{:.2f}"), "",
        f"Reproduce: `{command}`", "",
        "## Safety", "",
        "The weights are a plain state dict loaded with `torch.load(weights_only=True)`.", "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--summary", type=Path, required=True, help="summary.csv of benchmarks/agents.py")
    parser.add_argument("--policy", default="best", help="folder in the run: best (default) or policy")
    parser.add_argument("--label", default=None,
                        help="the policy's agent name in --summary, when it holds several learned agents")
    parser.add_argument("--command", default="python benchmarks/agents.py --agents NAME planner greedy-local "
                                              "greedy-2t oracle --sim-seeds 90001 90002 --episodes 50")
    args = parser.parse_args()

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.name) or args.name in (".", ".."):
        raise SystemExit(f"--name must be a plain policy name (letters, digits, '-', '_', '.'), not {args.name!r}")
    source = args.run / args.policy
    policy = LearnedPolicy.load(source, name=args.name)
    run = json.loads((args.run / "run.json").read_text())
    summary = pd.read_csv(args.summary)
    import cryorl.agents  # noqa: F401  (registers every policy)
    from cryorl.agents.registry import policy_names

    rules = set(policy_names()) - {"dqn", "ppo"}                       # the registered rules and planners
    labels = [a for a in summary.agent.unique() if a not in rules]
    if args.label is not None:
        if args.label not in labels:
            raise SystemExit(f"{args.summary}: no learned agent {args.label!r} (it has {labels})")
        summary = summary[summary.agent.isin([args.label]) | ~summary.agent.isin(labels)]
        labels = [args.label]
    if len(labels) != 1:
        raise SystemExit(f"{args.summary}: expected one learned agent beside the baselines, found {labels} "
                         "(choose one with --label)")
    target = PRETRAINED_DIR / args.name
    history = pd.read_csv(args.run / "eval.csv") if (args.run / "eval.csv").exists() else None
    imitation = pd.read_csv(args.run / "imitation.csv") if (args.run / "imitation.csv").exists() else None
    text = card(args.name, run, policy, summary, labels[0], args.command.replace("NAME", args.name), history,
                imitation)
    with output_folder(target, overwrite=True, what="shipped policy") as folder:     # replaced as a whole
        policy.save(folder)
        atomic_write_text(folder / "MODEL_CARD.md", text)
    print(f"shipped {target}")


if __name__ == "__main__":
    main()
