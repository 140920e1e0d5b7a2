"""The ``cryorl`` command line: it only parses.

Each command's work is a function of the module it belongs to, callable from Python with the same defaults
(``evaluate_agents``, ``plan_session``, ``benchmark_report``, ...); here each command has one small function that
adds its parser and one handler that calls that function and prints. Only the standard library is imported at
start-up: a handler imports its module when it runs, so ``--help``, listings and usage errors answer at once
(the agent names and the perception backbones are listed from :mod:`cryorl.listings`' committed tables).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

__all__ = ["main", "build_parser", "add_train_arguments"]

DESCRIPTION = "The ``cryorl`` command line."
OVERWRITE = "replace an existing --out as a whole (without it, a folder or file that exists is refused)"
CTF_HELP = "CTF results of an EPU session: a RELION STAR file (rlnCtfMaxResolution) or a CTFFIND folder"
ERAS = ["2023", "2022"]


# -- data --------------------------------------------------------------------------------------------------------

def _data_download(args: argparse.Namespace) -> int:
    from cryorl.datasets import fetch_data

    dest = fetch_data(args.name, args.dest, era=args.era, split=args.split, base_url=args.base_url,
                      overwrite=args.overwrite, crops=args.crops, workers=args.workers, progress=not args.quiet)
    if args.crops:
        print(f"hole crops in {dest}; perception commands read them with --data {dest} --split train|val")
    else:
        print(f"data in {dest}")
    return 0


def _data_verify(args: argparse.Namespace) -> int:
    from cryorl.datasets import verify_folder

    present = verify_folder(args.dir, era=args.era, crops=args.crops)
    print(f"{present} file(s) verified in {args.dir}")
    return 0


def _data_info(args: argparse.Namespace) -> int:
    from cryorl.datasets import describe_data

    print("\n".join(describe_data(args.dir, ctf=args.ctf, split=args.split, era=args.era,
                                  threshold=args.threshold)))
    return 0


def _add_data(commands) -> None:
    data = commands.add_parser("data", help="download and inspect real data").add_subparsers(dest="data_command",
                                                                                             required=True)
    download = data.add_parser("download", help="fetch a public dataset, verifying SHA-256")
    download.add_argument("name", choices=["aldolase"])
    download.add_argument("--dest", type=Path, default=None, help="folder (default: the cache, $CRYORL_CACHE)")
    download.add_argument("--era", choices=ERAS, default="2023",
                          help="2023: regressor predictions (default); 2022: the first paper's classifier split")
    download.add_argument("--split", choices=["train", "val", "all"], default="all")
    download.add_argument("--base-url", default=None, help="mirror address instead of the public repository")
    download.add_argument("--overwrite", action="store_true",
                          help="replace files of the same names whose content differs from the published files")
    download.add_argument("--crops", action="store_true",
                          help="the published hole crops (3,538 PNG files, 215 MB, Git LFS), checked against the "
                               "shipped manifest; resumable")
    download.add_argument("--workers", type=int, default=8, help="parallel downloads (--crops)")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(handler=_data_download)

    verify = data.add_parser("verify", help="check published files placed by hand (or downloaded) against their "
                                            "SHA-256")
    verify.add_argument("dir", type=Path)
    verify.add_argument("--era", choices=ERAS, default=None)
    verify.add_argument("--crops", action="store_true", help="also the published hole crops (DIR/Aldolase/...)")
    verify.set_defaults(handler=_data_verify)

    info = data.add_parser("info", help="what a data path holds (format, splits, trace, stage positions, crops, "
                                        "skipped rows) and the grid's hierarchy counts and quality statistics")
    info.add_argument("dir", type=Path, help="any path --data takes")
    info.add_argument("--ctf", type=Path, default=None, help=CTF_HELP)
    info.add_argument("--split", default=None, help="which split (default: the only one)")
    info.add_argument("--era", choices=ERAS, default=None)
    info.add_argument("--threshold", type=float, default=6.0, help="good CTFMaxRes threshold (Å)")
    info.set_defaults(handler=_data_info)


# -- evaluate, plan, benchmark -----------------------------------------------------------------------------------

def _evaluate(args: argparse.Namespace) -> int:
    from cryorl.agents.evaluation import evaluate_agents

    summary = evaluate_agents(args.agent, args.out, data=args.data, ctf=args.ctf, split=args.split, era=args.era,
                              grid_seed=args.grid_seed, budgets=args.budgets, episodes=args.episodes,
                              seed=args.seed, costs=args.costs, threshold=args.threshold, overwrite=args.overwrite,
                              progress=not args.quiet, threads=args.threads).summary
    columns = ["agent", "budget", "episodes", "good_mean", "good_std", "exposures_mean", "reward_mean"]
    print(summary[columns].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"wrote {args.out / 'summary.csv'} and {args.out / 'trajectories.csv'}")
    return 0


def _add_grid_arguments(command: argparse.ArgumentParser, data_help: str, era_help: str | None,
                        required: bool = False) -> None:
    """``--data``, ``--ctf``, ``--split`` and ``--era``: the grid a command works on (``data_help``: what it is,
    with ``{formats}`` for the registered formats)."""
    from cryorl.listings import grid_format_names

    formats = ", ".join(grid_format_names())
    command.add_argument("--data", type=Path, default=None, help=data_help.format(formats=formats),
                         required=required)
    command.add_argument("--ctf", type=Path, default=None, help=CTF_HELP)
    command.add_argument("--split", default=None, help="which split of --data (default: the only one)")
    command.add_argument("--era", choices=ERAS, default=None, help=era_help)


def _add_evaluate(commands) -> None:
    from cryorl.listings import policy_names

    evaluate = commands.add_parser("evaluate", help="evaluate agents over seeded random starts and budgets")
    evaluate.add_argument("--agent", nargs="+", required=True,
                          help=f"{', '.join(policy_names())}, a saved policy folder (labelled by its path; "
                               "NAME=PATH labels it NAME), or human-trace:PATH")
    _add_grid_arguments(evaluate, "a grid in a format cryorl reads ({formats}; `cryorl simulate` writes a "
                                  "cryorl folder; default: simulated)",
                        "2023: regressor predictions; 2022: classifier probabilities (default: detect)")
    evaluate.add_argument("--grid-seed", type=int, default=0, help="seed of the simulated grid (without --data)")
    evaluate.add_argument("--budgets", type=float, nargs="+", default=[120, 240, 480], help="minutes")
    evaluate.add_argument("--episodes", type=int, default=50)
    evaluate.add_argument("--seed", type=int, default=0, help="episode i starts from the hole of reset(seed + i)")
    evaluate.add_argument("--costs", default="cryorl-2023", help="cost preset (cryorl-2023, cryorl-2022, ...)")
    evaluate.add_argument("--threshold", type=float, default=6.0, help="good CTFMaxRes threshold (Å)")
    evaluate.add_argument("--out", type=Path, required=True, help="folder for summary.csv and trajectories.csv")
    evaluate.add_argument("--overwrite", action="store_true", help=OVERWRITE)
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument("--threads", type=int, default=1, help="torch threads for learned agents (1 is fastest)")
    evaluate.set_defaults(handler=_evaluate)


def _plan(args: argparse.Namespace) -> int:
    from cryorl.planning import plan_session

    plan_session(args.data, args.out, budget=args.budget, agent=args.agent, ctf=args.ctf, split=args.split,
                 era=args.era, costs=args.costs, threshold=args.threshold, start=args.start, measured=args.measured,
                 watch=args.watch, interval=args.interval, overwrite=args.overwrite)
    return 0


def _add_plan(commands) -> None:
    plan = commands.add_parser("plan", help="a policy's ordered targets for a session's time left (plan.csv, a "
                                            "SerialEM .nav or Leginon target names), re-planned as exposures come in")
    _add_grid_arguments(plan, "the session, in a format cryorl reads ({formats})",
                        "2023: regressor predictions; 2022: classifier probabilities (default: detect)", required=True)
    plan.add_argument("--agent", default="planner", help="planner (default), greedy-local, greedy-2t, dqn, ppo, a "
                                                         "saved policy folder, ...")
    plan.add_argument("--budget", type=float, required=True, help="minutes of the whole session")
    plan.add_argument("--costs", default="cryorl-2023", help="cost preset (cryorl-2023, cryorl-2022, ...)")
    plan.add_argument("--threshold", type=float, default=6.0, help="good CTFMaxRes threshold (Å)")
    plan.add_argument("--start", default=None, help="the hole the microscope is at (name or index); default: the "
                                                     "first measured hole, or the plan's own best start")
    plan.add_argument("--measured", type=Path, default=None,
                      help="holes exposed so far with their CTFMaxRes, in order ('hole,ctf' rows or the CryoRL CTF "
                           "layout): removed from the plan, their minutes taken from the budget")
    plan.add_argument("--watch", action="store_true",
                      help="re-plan whenever --measured changes, replacing the plan files, until the budget is spent")
    plan.add_argument("--interval", type=float, default=2.0, help="seconds between checks of --measured (--watch)")
    plan.add_argument("--out", type=Path, required=True, help="folder for plan.csv and plan.nav or targets.txt")
    plan.add_argument("--overwrite", action="store_true", help=OVERWRITE)
    plan.set_defaults(handler=_plan)


def _benchmark(args: argparse.Namespace) -> int:
    from cryorl.reporting.markdown import markdown_table
    from cryorl.reporting.report import benchmark_report

    result = benchmark_report(args.out, data=args.data, ctf=args.ctf, split=args.split, era=args.era,
                              grid_seed=args.grid_seed, agents=args.agents, trace=args.trace,
                              operators=args.operators, operator_costs=args.operator_costs, budgets=args.budgets,
                              episodes=args.episodes, seed=args.seed, costs=args.costs, threshold=args.threshold,
                              published=args.published, overwrite=args.overwrite, steps=not args.no_steps,
                              progress=not args.quiet, threads=args.threads,
                              command="cryorl " + " ".join(shlex.quote(a) for a in args.argv))
    print(markdown_table(result.headline()))
    print(f"report: {args.out / 'report.md'}")
    return 0


def _add_benchmark(commands) -> None:
    from cryorl.reporting.published import PUBLISHED

    bench = commands.add_parser("benchmark", help="every agent, the oracle and human traces on one grid: a report "
                                                  "folder with report.md, tables and plots")
    _add_grid_arguments(bench, "a grid in a format cryorl reads ({formats}; `cryorl simulate` writes a "
                               "cryorl folder; default: simulated)", None)
    bench.add_argument("--grid-seed", type=int, default=0, help="seed of the simulated grid (without --data)")
    bench.add_argument("--agents", nargs="+", default=None,
                       help="agents as for `cryorl evaluate` (the oracle is always added)")
    bench.add_argument("--trace", type=Path, nargs="*", default=[],
                       help="human trace files (default with --data: the split's timestamps.csv)")
    bench.add_argument("--operators", type=int, default=None,
                       help="simulated operator traces to add (default: 10 when there is no human trace)")
    bench.add_argument("--operator-costs", default="aldolase-timestamps",
                       help="cost preset of the simulated operators' own clock")
    bench.add_argument("--budgets", type=float, nargs="+", default=[120, 240, 480], help="minutes")
    bench.add_argument("--episodes", type=int, default=50)
    bench.add_argument("--seed", type=int, default=0, help="episode i starts from the hole of reset(seed + i)")
    bench.add_argument("--costs", default="cryorl-2023", help="cost preset (cryorl-2023, cryorl-2022, ...)")
    bench.add_argument("--threshold", type=float, default=6.0, help="good CTFMaxRes threshold (Å)")
    bench.add_argument("--published", choices=sorted(PUBLISHED), default=None,
                       help="put a paper's published figures for this setting beside the results")
    bench.add_argument("--out", type=Path, default=Path("benchmark_report"))
    bench.add_argument("--overwrite", action="store_true", help=OVERWRITE)
    bench.add_argument("--no-steps", action="store_true", help="do not write steps.csv.gz (one row per step)")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.add_argument("--threads", type=int, default=1, help="torch threads for learned agents (1 is fastest)")
    bench.set_defaults(handler=_benchmark)


# -- sessions: simulate, holes, look -----------------------------------------------------------------------------

def _simulate(args: argparse.Namespace) -> int:
    from cryorl.images.simulated_session import write_simulated_session

    spec = write_simulated_session(args.out, args.seed, preset=args.preset, holes=args.holes, split=args.split,
                                   crops=args.crops, overwrite=args.overwrite, progress=not args.quiet)
    print(f"simulated session ({spec.n_holes} holes, seed {args.seed}) in {args.out}; "
          f"load it with cryorl.load_grid({str(args.out)!r}), or give it as --data")
    return 0


def _add_simulate(commands) -> None:
    simulate = commands.add_parser("simulate", help="write a simulated session: MRC images, hole table, CryoRL "
                                                    "files, a collection trace")
    simulate.add_argument("--out", type=Path, required=True)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--preset", default=None, help="take the grid shape of an envs/ preset (e.g. default)")
    simulate.add_argument("--holes", type=int, default=None, help="a grid of this many holes, the real session's "
                                                                  "shape")
    simulate.add_argument("--split", default="all", help="split name in the CryoRL file names")
    simulate.add_argument("--crops", action="store_true", help="also write 150 x 150 hole crops per patch")
    simulate.add_argument("--quiet", action="store_true")
    simulate.add_argument("--overwrite", action="store_true", help=OVERWRITE)
    simulate.set_defaults(handler=_simulate)


def _holes(args: argparse.Namespace) -> int:
    from cryorl.images.session_holes import write_hole_table

    atlas, images = write_hole_table(args.dir, args.out, ctf=args.ctf, predictions=args.predictions,
                                     hole_diameter_um=args.hole_diameter, hole_pitch_um=args.hole_pitch,
                                     overwrite=args.overwrite, progress=not args.quiet)
    print(atlas)
    print(f"{images['detected'].mean():.1%} of holes seen directly, the rest placed by the lattice fit; "
          f"hole table in {args.out}")
    return 0


def _add_holes(commands) -> None:
    holes = commands.add_parser("holes", help="find holes in a session's patch images and write the hole table")
    holes.add_argument("dir", type=Path, help="a session folder (with patches/) or a folder of patch images")
    holes.add_argument("--ctf", type=Path, default=None, help="CryoRL CTF CSV: keep and name its holes")
    holes.add_argument("--predictions", type=Path, default=None)
    holes.add_argument("--hole-diameter", type=float, default=1.0, help="µm (R1/1: 1.0, R1.2/1.3: 1.2)")
    holes.add_argument("--hole-pitch", type=float, default=2.0, help="µm centre to centre (R1/1: 2.0)")
    holes.add_argument("--out", type=Path, required=True, help="hole table (.csv or .parquet)")
    holes.add_argument("--quiet", action="store_true")
    holes.add_argument("--overwrite", action="store_true", help=OVERWRITE)
    holes.set_defaults(handler=_holes)


def _look(args: argparse.Namespace) -> int:
    from cryorl.images.look import look

    for path in look(args.dir, args.out, hole_diameter_um=args.hole_diameter, hole_pitch_um=args.hole_pitch,
                     overwrite=args.overwrite):
        print(path)
    return 0


def _add_look(commands) -> None:
    look = commands.add_parser("look", help="render a session's atlas, a square with found holes, hole crops")
    look.add_argument("dir", type=Path)
    look.add_argument("--out", type=Path, default=None, help="default DIR/look")
    look.add_argument("--hole-diameter", type=float, default=1.0)
    look.add_argument("--hole-pitch", type=float, default=2.0)
    look.add_argument("--overwrite", action="store_true", help=OVERWRITE)
    look.set_defaults(handler=_look)


# -- perception --------------------------------------------------------------------------------------------------

def _perception_models(args: argparse.Namespace) -> int:
    from cryorl.listings import format_models, perception_models

    print(format_models(perception_models(args.pattern)))
    return 0


_TRAIN_SETTINGS = ("recipe", "backbone", "target", "loss", "input_size", "epochs", "batch_size", "lr", "seed",
                   "lr_scaling", "warmup_epochs", "accumulate", "checkpoint", "resume", "backend",
                   "grad_compression", "semi_supervised", "labelled_fraction", "confidence", "temperature",
                   "unlabelled_weight", "unlabelled_ratio", "augment_policy", "policy_trials", "search_epochs",
                   "adversarial", "epsilon", "norm", "attack_steps", "step_size", "data", "split", "grids",
                   "val_grids", "threads", "overwrite")


def _perception_train(args: argparse.Namespace) -> int:
    from cryorl.perception.runs import train_predictor

    history = train_predictor(args.out, distributed_run=args.distributed, progress=not args.quiet,
                              **{name: getattr(args, name) for name in _TRAIN_SETTINGS})
    if history is not None:                           # the process that writes (rank 0) reports
        print(history.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"predictor in {args.out}")
    return 0


def _perception_evaluate(args: argparse.Namespace) -> int:
    from cryorl.perception.runs import evaluate_predictor

    metrics = evaluate_predictor(args.model, data=args.data, split=args.split, grids=args.grids,
                                 threshold=args.threshold, threads=args.threads)
    for key, value in metrics.items():
        print(f"{key:14s} {value:.4f}" if isinstance(value, float) else f"{key:14s} {value}")
    return 0


def _perception_attack(args: argparse.Namespace) -> int:
    from cryorl.perception.runs import attack_predictor

    table = attack_predictor(args.model, data=args.data, split=args.split, grids=args.grids,
                             threshold=args.threshold, method=args.method, epsilon=args.epsilon, norm=args.norm,
                             attack_steps=args.attack_steps, step_size=args.step_size, seed=args.seed,
                             threads=args.threads)
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


def _perception_explain(args: argparse.Namespace) -> int:
    from cryorl.perception.explain import explain_holes

    drawn = explain_holes(args.model, args.out, data=args.data, split=args.split, grids=args.grids,
                          holes=args.holes, method=args.method, baseline=args.baseline, steps=args.steps,
                          overwrite=args.overwrite, threads=args.threads)
    print(f"explanations of {drawn} holes in {args.out}")
    return 0


def _perception_score(args: argparse.Namespace) -> int:
    from cryorl.perception.runs import score_file

    scores = score_file(args.predictions, args.data, split=args.split, era=args.era, threshold=args.threshold,
                        threads=args.threads)
    for key, value in scores.items():
        print(f"{key:22s} {value:.4f}" if isinstance(value, float) else f"{key:22s} {value}")
    return 0


def _perception_predict(args: argparse.Namespace) -> int:
    from cryorl.perception.runs import predict_holes

    predicted = predict_holes(args.model, args.out, data=args.data, split=args.split, grids=args.grids,
                              overwrite=args.overwrite, progress=not args.quiet, threads=args.threads)
    print(f"{len(predicted)} predictions (CryoRL format: name, CTFMaxRes) in {args.out}")
    return 0


def _add_attack_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--epsilon", type=float, default=0.05,
                         help="attack budget, in units of an image's standard deviation (inputs are normalised)")
    command.add_argument("--norm", choices=["linf", "l2"], default="linf")
    command.add_argument("--attack-steps", type=int, default=5, help="PGD steps")
    command.add_argument("--step-size", type=float, default=None, help="PGD step (default 2.5·ε/steps)")


def _add_crop_arguments(command: argparse.ArgumentParser, grids: list[int]) -> None:
    """Where a perception command's crops come from: a session folder, or simulated grids."""
    command.add_argument("--data", type=Path, default=None, help="a session folder with crops/ "
                                                                 "(default: simulated grids)")
    command.add_argument("--split", default=None, help="the split of --data whose CTF table labels the crops "
                                                       "(default: the only one)")
    command.add_argument("--grids", type=int, nargs="+", default=grids, help="simulated grid seeds")
    command.add_argument("--threads", type=int, default=2)
    command.add_argument("--quiet", action="store_true")


def _add_perception_train(sub) -> None:
    train = sub.add_parser("train", help="train a predictor on simulated crops (or a session's crops)")
    train.add_argument("--recipe", choices=["default", "papers"], default="default",
                       help="settings to start from (papers: the CryoRL regressor's ResNet-50 recipe); each option "
                            "given overrides its own")
    train.add_argument("--backbone", default=None, help="registered backbone (default recipe: resnet10_small)")
    train.add_argument("--target", choices=["regression", "bins"], default=None)
    train.add_argument("--loss", choices=["smooth_l1", "l2"], default=None, help="regression loss")
    train.add_argument("--input-size", type=int, default=None, help="pixels (default recipe: 96)")
    train.add_argument("--epochs", type=int, default=None, help="default recipe: 10")
    train.add_argument("--batch-size", type=int, default=None, help="global batch (default recipe: 64)")
    train.add_argument("--lr", type=float, default=None, help="default recipe: 2e-3")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--overwrite", action="store_true", help=OVERWRITE)
    train.add_argument("--lr-scaling", choices=["none", "linear", "sqrt"], default="none",
                       help="scale --lr with the global batch relative to 64 crops (large-batch training)")
    train.add_argument("--warmup-epochs", type=float, default=None,
                       help="epochs of learning-rate warm-up (default: 15 %% of --epochs; papers recipe: 2 %%)")
    train.add_argument("--accumulate", type=int, default=1,
                       help="micro-batches per step and process (gradient accumulation); --batch-size is global")
    train.add_argument("--checkpoint", type=Path, default=None,
                       help="checkpoint after every epoch here (default OUT.checkpoint.pt beside --out; removed "
                            "when the run finishes)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run from its checkpoint")
    _add_distributed_arguments(train)
    _add_semi_arguments(train)
    train.add_argument("--adversarial", choices=["pgd", "fgsm"], default=None,
                       help="adversarial (min-max) training: each batch replaced by its PGD or FGSM perturbation")
    _add_attack_arguments(train)
    _add_crop_arguments(train, [1, 2, 3, 4])
    train.add_argument("--val-grids", type=int, nargs="+", default=[8],
                       help="simulated validation grid seeds (with --data: a fifth of its holes instead)")
    train.set_defaults(handler=_perception_train)


def _add_distributed_arguments(train: argparse.ArgumentParser) -> None:
    group = train.add_argument_group(
        "distributed data-parallel training", "launch with torchrun, e.g. torchrun --standalone --nproc-per-node 2 "
        "-m cryorl perception train --distributed ...; rank 0 validates and writes")
    group.add_argument("--distributed", action="store_true",
                       help="join torchrun's process group: DDP, each process a share of every batch")
    group.add_argument("--backend", choices=["auto", "gloo", "nccl"], default="auto",
                       help="auto: NCCL with CUDA, gloo on CPU")
    group.add_argument("--grad-compression", choices=["none", "fp16", "powersgd"], default="none",
                       help="DDP communication hook for the gradients")


def _add_semi_arguments(train: argparse.ArgumentParser) -> None:
    group = train.add_argument_group("semi-supervised training", "FixMatch on unlabelled crops (needs --target bins)")
    group.add_argument("--semi-supervised", choices=["fixmatch"], default=None,
                       help="semi-supervised training: unlabelled crops pseudo-labelled by FixMatch")
    group.add_argument("--labelled-fraction", type=float, default=1.0,
                       help="use the CTFMaxRes of only this fraction of the training crops (the rest are "
                            "unlabelled with --semi-supervised, left out without)")
    group.add_argument("--confidence", type=float, default=0.3,
                       help="FixMatch's confidence threshold (the largest CTF-bin probability)")
    group.add_argument("--temperature", type=float, default=0.5,
                       help="sharpening of the pseudo-labels (0: hard labels, FixMatch proper)")
    group.add_argument("--unlabelled-weight", type=float, default=1.0)
    group.add_argument("--unlabelled-ratio", type=int, default=3, help="unlabelled crops per labelled one")
    group.add_argument("--augment-policy", default="default",
                       help="strong augmentation: 'default', 'search' (learned on held-out labelled holes), "
                            "or a policy JSON file")
    group.add_argument("--policy-trials", type=int, default=8, help="candidate policies of the search")
    group.add_argument("--search-epochs", type=int, default=1, help="epochs of the search's first round")


def _add_perception_explain(sub) -> None:
    explain = sub.add_parser("explain", help="what made a hole bad: Grad-CAM and integrated-gradients maps of the "
                                             "holes predicted worst (per cause on simulated grids), as a PNG")
    explain.add_argument("--model", type=Path, required=True)
    explain.add_argument("--out", type=Path, required=True, help="the PNG to write")
    explain.add_argument("--holes", type=int, default=2,
                         help="holes to show: per cause on simulated grids, in all for a session")
    explain.add_argument("--method", choices=["both", "integrated_gradients", "gradcam"], default="both",
                         help="both: Grad-CAM where the backbone has a late convolution, and integrated gradients")
    explain.add_argument("--baseline", choices=["good", "flat"], default="good",
                         help="integrated gradients from a typical good hole (what makes this one worse) or a "
                              "flat image")
    explain.add_argument("--steps", type=int, default=32, help="integrated-gradients steps")
    explain.add_argument("--overwrite", action="store_true", help=OVERWRITE)
    _add_crop_arguments(explain, [9])
    explain.set_defaults(handler=_perception_explain)


def _add_perception_score(sub) -> None:
    score = sub.add_parser("score", help="score a predictions file against a grid's measured CTFMaxRes (the papers' "
                                         "conventions: both clipped at 20 Å)")
    score.add_argument("predictions", type=Path, help="CryoRL predictions file (name CTFMaxRes, or name P(good) "
                                                      "P(bad))")
    score.add_argument("--data", type=Path, required=True, help="the grid whose CTF table is the truth")
    score.add_argument("--split", default=None, help="which split of --data (default: the only one)")
    score.add_argument("--era", choices=ERAS, default=None)
    score.add_argument("--threshold", type=float, default=6.0, help="good CTFMaxRes threshold (Å)")
    score.add_argument("--threads", type=int, default=1)
    score.set_defaults(handler=_perception_score)


def _add_perception(commands) -> None:
    perception = commands.add_parser("perception", help="hole-quality models: list, train (adversarial, "
                                                        "semi-supervised, distributed), evaluate, attack, explain, "
                                                        "predict")
    sub = perception.add_subparsers(dest="perception_command", required=True)
    models = sub.add_parser("models", help="registered backbones with parameters and GMACs")
    models.add_argument("--pattern", default="*")
    models.add_argument("--threads", type=int, default=1)
    models.set_defaults(handler=_perception_models)
    _add_perception_train(sub)
    evaluate = sub.add_parser("evaluate", help="MAE, correlation and accuracy at the threshold")
    evaluate.add_argument("--model", type=Path, required=True)
    evaluate.add_argument("--threshold", type=float, default=6.0)
    _add_crop_arguments(evaluate, [9])
    evaluate.set_defaults(handler=_perception_evaluate)
    attack = sub.add_parser("attack", help="MAE and accuracy on clean crops and under a PGD or FGSM attack of a "
                                           "given budget")
    attack.add_argument("--model", type=Path, required=True)
    attack.add_argument("--threshold", type=float, default=6.0)
    attack.add_argument("--method", choices=["pgd", "fgsm"], default="pgd")
    attack.add_argument("--seed", type=int, default=0)
    _add_attack_arguments(attack)
    _add_crop_arguments(attack, [9])
    attack.set_defaults(handler=_perception_attack)
    _add_perception_explain(sub)
    _add_perception_score(sub)
    predict = sub.add_parser("predict", help="write a CryoRL predictions file for a session's crops")
    predict.add_argument("--model", type=Path, required=True)
    predict.add_argument("--out", type=Path, required=True)
    predict.add_argument("--overwrite", action="store_true", help=OVERWRITE)
    _add_crop_arguments(predict, [9])
    predict.set_defaults(handler=_perception_predict)


# -- train -------------------------------------------------------------------------------------------------------

def _train(args: argparse.Namespace) -> int:
    from cryorl.agents.training import train_agent

    policy, run_dir = train_agent(args.algo, args.config, args.run_dir, seed=args.seed, timesteps=args.timesteps,
                                  imitation_steps=args.imitation_steps, threads=args.threads,
                                  progress=not args.no_progress)
    print(f"trained {policy.name}: {policy.metadata}; policy in {run_dir / 'policy'}, best in {run_dir / 'best'}")
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``cryorl train`` (shared with ``agents/train.py``)."""
    parser.add_argument("--algo", choices=["dqn", "ppo"], default="dqn")
    parser.add_argument("--config", type=Path, default=None,
                        help="hyper-parameter YAML (default: the shipped agents/hyperparams/ALGO.yml)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="run folder (default runs/ALGO-seedN); running again resumes an interrupted run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, default=None,
                        help="RL steps, instead of the config's n_timesteps (rounded up to whole PPO rollouts); "
                             "below it, the imitation is scaled down with it")
    parser.add_argument("--imitation-steps", type=int, default=None, metavar="N",
                        help="labelled steps of imitation in all, split over the config's rounds (0: no "
                             "imitation); default: the config's, scaled to --timesteps")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=_train)
    return parser


def _add_train(commands) -> None:
    add_train_arguments(commands.add_parser(
        "train", help="train a learned agent (masked DQN or MaskablePPO) with Stable-Baselines3",
        description="Train a learned collection agent on CryoEM-v0 (the same as agents/train.py). Run folders hold "
                    "SB3 checkpoints, which unpickle Python objects when resumed: resume only your own runs."))


# -- the parser and main -----------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``cryorl: …``) and exit status 2, like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; each leaf's ``handler`` runs it (imports nothing beyond the standard library
    and :mod:`cryorl.listings`)."""
    from cryorl import __version__

    parser = _Parser(prog="cryorl", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"cryorl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_data, _add_evaluate, _add_plan, _add_simulate, _add_holes, _add_look, _add_perception,
                _add_benchmark, _add_train):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; an error is one line on stderr and a non-zero exit (``CRYORL_DEBUG=1``: traceback)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("cryorl: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # every failure reaches the user as one line
        if os.environ.get("CRYORL_DEBUG"):
            raise
        from cryorl.outputs import one_line

        print(f"cryorl: {one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
