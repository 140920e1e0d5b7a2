"""The ``cryorl`` command line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _data_download(args: argparse.Namespace) -> int:
    from cryorl.download import DownloadError, download_dataset

    try:
        dest = download_dataset(args.name, args.dest, era=args.era, split=args.split, base_url=args.base_url)
    except DownloadError as error:
        print(f"cryorl: {error}", file=sys.stderr)
        return 1
    print(f"data in {dest}")
    return 0


def _data_info(args: argparse.Namespace) -> int:
    from cryorl.gridstats import grid_statistics
    from cryorl.loaders import load_cryorl_dataset

    atlas = load_cryorl_dataset(args.dir, args.split, era=args.era)
    print(atlas)
    for key, value in grid_statistics(atlas, args.threshold).items():
        print(f"{key:45s} {value:10.3f}" if isinstance(value, float) else f"{key:45s} {value:10d}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from cryorl.agents import evaluate_policy, make_policy, summarize
    from cryorl.env import CryoEMEnv
    from cryorl.fileio import atomic_path

    env_kwargs = dict(costs=args.costs, threshold=args.threshold)
    if args.data is not None:
        from cryorl.loaders import load_cryorl_dataset

        env = CryoEMEnv(load_cryorl_dataset(args.data, args.split), **env_kwargs)
    else:
        env = CryoEMEnv(grid_seed=args.grid_seed, **env_kwargs)
    frames, decision_ms = [], {}
    for agent in args.agent:
        trajectories = evaluate_policy(make_policy(agent, seed=args.seed), env, episodes=args.episodes,
                                       seed=args.seed, budgets=args.budgets, progress=not args.quiet)
        decision_ms.update(trajectories.attrs["decision_ms"])
        frames.append(trajectories)
    trajectories = pd.concat(frames, ignore_index=True)
    summary = summarize(trajectories, decision_ms)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("summary.csv", summary), ("trajectories.csv", trajectories)):
        with atomic_path(args.out / name) as tmp:
            frame.to_csv(tmp, index=False)
    columns = ["agent", "budget", "episodes", "good_mean", "good_std", "exposures_mean", "reward_mean"]
    print(summary[columns].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"wrote {args.out / 'summary.csv'} and {args.out / 'trajectories.csv'}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from cryorl.demo import run_demo

    run_demo(Path(args.out), seed=args.seed, episodes=args.episodes)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cryorl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="download and inspect real data").add_subparsers(dest="data_command",
                                                                                             required=True)
    download = data.add_parser("download", help="fetch a public dataset, verifying SHA-256")
    download.add_argument("name", choices=["aldolase"])
    download.add_argument("--dest", type=Path, default=None, help="folder (default: the cache, $CRYORL_CACHE)")
    download.add_argument("--era", choices=["2023", "2022"], default="2023",
                          help="2023: regressor predictions (default); 2022: the first paper's classifier split")
    download.add_argument("--split", choices=["train", "val", "all"], default="all")
    download.add_argument("--base-url", default=None, help="mirror address instead of the public repository")
    download.set_defaults(run=_data_download)

    info = data.add_parser("info", help="hierarchy counts and quality statistics of a downloaded split")
    info.add_argument("dir", type=Path)
    info.add_argument("--split", default="train")
    info.add_argument("--era", choices=["2023", "2022"], default=None)
    info.add_argument("--threshold", type=float, default=6.0, help="good CTFMaxRes threshold (Å)")
    info.set_defaults(run=_data_info)

    evaluate = commands.add_parser("evaluate", help="evaluate agents over seeded random starts and budgets")
    evaluate.add_argument("--agent", nargs="+", required=True,
                          help="random, predict-rank, greedy-local, snowball, oracle, dqn, ppo, a saved policy "
                               "folder, or human-trace:PATH")
    evaluate.add_argument("--data", type=Path, default=None, help="a CryoRL-format folder (default: simulated grid)")
    evaluate.add_argument("--split", default="val")
    evaluate.add_argument("--grid-seed", type=int, default=0, help="seed of the simulated grid (without --data)")
    evaluate.add_argument("--budgets", type=float, nargs="+", default=[120, 240, 480], help="minutes")
    evaluate.add_argument("--episodes", type=int, default=50)
    evaluate.add_argument("--seed", type=int, default=0, help="episode i starts from the hole of reset(seed + i)")
    evaluate.add_argument("--costs", default="cryorl-2023", help="cost preset (cryorl-2023, cryorl-2022, ...)")
    evaluate.add_argument("--threshold", type=float, default=6.0, help="good CTFMaxRes threshold (Å)")
    evaluate.add_argument("--out", type=Path, required=True)
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument("--threads", type=int, default=1, help="torch threads for learned agents (1 is fastest)")
    evaluate.set_defaults(run=_evaluate)

    demo = commands.add_parser("demo", help="run the environment on the built-in simulated grid")
    demo.add_argument("--out", default="demo_output")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--episodes", type=int, default=20)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"cryorl: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
