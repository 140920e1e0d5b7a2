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
