"""The ``cryorl`` command line."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main"]


def _once(values: list, option: str) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{option} lists {value if isinstance(value, str) else format(value, 'g')} twice; "
                             "each would be counted again")
        seen.add(value)


def _episodes(value: int) -> int:
    if value < 1:
        raise ValueError(f"--episodes must be at least 1, not {value}")
    return value


def _data_download(args: argparse.Namespace) -> int:
    from cryorl.download import DownloadError, download_dataset

    try:
        dest = download_dataset(args.name, args.dest, era=args.era, split=args.split, base_url=args.base_url,
                                overwrite=args.overwrite)
    except DownloadError as error:
        print(f"cryorl: {_one_line(error)}", file=sys.stderr)
        return 2
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

    from cryorl.agents import evaluate_policy, make_policy, summarize
    from cryorl.agents.evaluation import check_budgets
    from cryorl.env import CryoEMEnv
    from cryorl.outputs import check_output_folder, output_folder

    _once(args.agent, "--agent")
    budgets, episodes = check_budgets(args.budgets), _episodes(args.episodes)
    check_output_folder(args.out, overwrite=args.overwrite, what="evaluation", inputs=[args.data])
    torch.set_num_threads(args.threads)
    env_kwargs = dict(costs=args.costs, threshold=args.threshold)
    if args.data is not None:
        from cryorl.loaders import load_cryorl_dataset

        env = CryoEMEnv(load_cryorl_dataset(args.data, args.split, era=args.era), **env_kwargs)
    else:
        env = CryoEMEnv(grid_seed=args.grid_seed, **env_kwargs)
    policies = [make_policy(agent, seed=args.seed) for agent in args.agent]
    _once([p.name for p in policies], "--agent (policy names)")
    with output_folder(args.out, overwrite=args.overwrite, what="evaluation", inputs=[args.data]) as out:
        frames, decision_ms = [], {}
        for policy in policies:
            trajectories = evaluate_policy(policy, env, episodes=episodes, seed=args.seed, budgets=budgets,
                                           progress=not args.quiet)
            decision_ms.update(trajectories.attrs["decision_ms"])
            frames.append(trajectories)
        trajectories = pd.concat(frames, ignore_index=True)
        summary = summarize(trajectories, decision_ms)
        summary.to_csv(out / "summary.csv", index=False)
        trajectories.to_csv(out / "trajectories.csv", index=False)
    columns = ["agent", "budget", "episodes", "good_mean", "good_std", "exposures_mean", "reward_mean"]
    print(summary[columns].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"wrote {args.out / 'summary.csv'} and {args.out / 'trajectories.csv'}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    import time

    from cryorl.loaders import load_cryorl_dataset
    from cryorl.outputs import check_output_folder, output_folder
    from cryorl.planning import SessionOver, make_plan, read_measured, read_stage_positions

    inputs = [args.data] + ([args.measured] if args.measured else [])
    check_output_folder(args.out, overwrite=args.overwrite, what="plan", inputs=inputs)
    if args.watch and args.measured is None:
        raise ValueError("--watch needs --measured FILE (the file the session appends its exposures to)")
    atlas = load_cryorl_dataset(args.data, args.split, era=args.era)
    table = args.data / "holes.csv"
    stage = read_stage_positions(table, atlas) if table.exists() else None

    def planned(complete_lines_only: bool):
        measured = []
        if args.measured is not None and args.measured.exists():
            measured = read_measured(args.measured, atlas, complete_lines_only=complete_lines_only)
        elif args.measured is not None and not args.watch:
            raise FileNotFoundError(f"{args.measured}: no such measured file")
        return make_plan(atlas, args.agent, budget=args.budget, costs=args.costs, threshold=args.threshold,
                         start=args.start, measured=measured, stage=stage)

    def report(plan) -> None:
        where = f"from {plan.position}" if plan.position else "from the most probable hole"
        print(f"{plan.agent}: {len(plan.targets)} targets {where}, {plan.time_left:g} of {plan.budget:g} min left "
              f"after {plan.measured} measured exposures")

    plan = planned(complete_lines_only=args.watch)
    with output_folder(args.out, overwrite=args.overwrite, what="plan", inputs=inputs) as out:
        written = plan.write(out)
    report(plan)
    print("wrote " + ", ".join(str(args.out / path.name) for path in written))
    if not args.watch:
        return 0
    last = None
    while True:                                  # re-plan whenever the measured file changes, until the time is up
        stat = args.measured.stat() if args.measured.exists() else None
        state = (stat.st_size, stat.st_mtime_ns) if stat else None
        if state != last:
            last = state
            try:
                plan = planned(complete_lines_only=True)
            except SessionOver as error:
                print(f"session over: {error}")
                return 0
            plan.write(args.out)
            report(plan)
        time.sleep(args.interval)


def _benchmark(args: argparse.Namespace) -> int:
    import shlex

    import torch

    from cryorl.agents import make_policy
    from cryorl.agents.evaluation import check_budgets
    from cryorl.human import load_human_trace, simulate_operator
    from cryorl.outputs import check_output_folder, output_folder
    from cryorl.reporting.benchmark import run_benchmark
    from cryorl.reporting.markdown import markdown_table
    from cryorl.reporting.report import write_report

    _once(args.agents, "--agents")
    budgets, episodes = check_budgets(args.budgets), _episodes(args.episodes)
    if args.operators is not None and args.operators < 0:
        raise ValueError(f"--operators must be 0 or more, not {args.operators}")
    inputs = [args.data, *args.trace]
    check_output_folder(args.out, overwrite=args.overwrite, what="report", inputs=inputs)
    torch.set_num_threads(args.threads)
    traces = [load_human_trace(path) for path in args.trace]
    if args.data is not None:
        from cryorl.loaders import dataset_files, load_cryorl_dataset

        atlas = load_cryorl_dataset(args.data, args.split, era=args.era)
        grid = f"{args.data.name} ({args.split} split)"
        session = dataset_files(args.data, args.split, args.era).get("timestamps")
        if not args.trace and session is not None and session.exists():
            traces.append(load_human_trace(session, name="human operator"))
    else:
        from cryorl.synth import simulate_atlas

        atlas = simulate_atlas(args.grid_seed)
        grid = f"built-in simulated grid (seed {args.grid_seed})"
    operators = args.operators if args.operators is not None else (0 if traces else 10)
    traces += [simulate_operator(atlas, seed, costs=args.operator_costs, threshold=args.threshold,
                                 name=f"simulated operator {seed}") for seed in range(operators)]
    policies = [make_policy(agent, seed=args.seed) for agent in args.agents]
    command = "cryorl " + " ".join(shlex.quote(a) for a in args.argv)
    with output_folder(args.out, overwrite=args.overwrite, what="report", inputs=inputs) as out:
        result = run_benchmark(atlas, agents=policies, traces=traces, budgets=budgets, episodes=episodes,
                               seed=args.seed, costs=args.costs, threshold=args.threshold, grid=grid,
                               published=args.published, progress=not args.quiet, command=command)
        if operators:
            result.notes.append(f"Human traces here are {operators} *simulated* operators "
                                f"(`cryorl.human.simulate_operator`, seeds 0-{operators - 1}; their own clock uses "
                                f"the `{args.operator_costs}` costs with jitter and breaks), not recordings.")
        write_report(result, out, steps=not args.no_steps)
    print(markdown_table(result.headline()))
    print(f"report: {args.out / 'report.md'}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from cryorl.images.synth_session import simulate_session
    from cryorl.outputs import output_folder
    from cryorl.presets import load_preset
    from cryorl.synth import GridSpec

    grid = (load_preset(args.preset).get("grid") or {}) if args.preset else {}
    if args.holes is not None:                        # the preset's shape (if any) scaled to this many holes
        grid = {k: v for k, v in grid.items() if k not in ("n_patches", "n_squares", "n_tiles")}
        grid["n_holes"] = args.holes
    spec = GridSpec.from_mapping(grid)
    with output_folder(args.out, overwrite=args.overwrite, what="simulated session") as out:
        simulate_session(out, args.seed, spec, crops=args.crops, split=args.split, progress=not args.quiet)
    print(f"simulated session ({spec.n_holes} holes, seed {args.seed}) in {args.out}; "
          f"load it with cryorl.load_cryorl_dataset({str(args.out)!r}, {args.split!r})")
    return 0


def _holes(args: argparse.Namespace) -> int:
    from cryorl.images.session_holes import atlas_from_images
    from cryorl.outputs import check_output_file

    check_output_file(args.out, overwrite=args.overwrite)
    atlas, images = atlas_from_images(args.dir, args.ctf, args.predictions, hole_diameter_um=args.hole_diameter,
                                      hole_pitch_um=args.hole_pitch, progress=not args.quiet)
    atlas.save(args.out)
    print(atlas)
    print(f"{images['detected'].mean():.1%} of holes seen directly, the rest placed by the lattice fit; "
          f"hole table in {args.out}")
    return 0


def _look(args: argparse.Namespace) -> int:
    from cryorl.images.look import look_at_session
    from cryorl.outputs import output_folder

    target = args.out if args.out is not None else args.dir / "look"
    with output_folder(target, overwrite=args.overwrite, what="pictures", inputs=[args.dir]) as out:
        paths = look_at_session(args.dir, out, args.hole_diameter, args.hole_pitch)
    for path in paths:
        print(target / Path(path).relative_to(out))
    return 0


def _perception_data(args: argparse.Namespace, seeds: list[int] | None, labelled_only: bool = True):
    """Crops and CTFMaxRes: from a session folder (crops/ and its CTF table) or simulated grids. With
    ``labelled_only`` the crops without a CTF row are left out (and counted on stderr)."""
    import numpy as np

    if args.data is not None:
        from cryorl.images.synth_session import CROPS_DIR
        from cryorl.loaders import ctf_tables, read_ctf_csv
        from cryorl.perception.crops import load_session_crops

        names, crops = load_session_crops(args.data)
        tables = ctf_tables(args.data)
        if not tables:
            return names, crops, None
        ctf = read_ctf_csv(tables[0]).set_index("name")["ctf_max_res"]
        values = ctf.reindex(names).to_numpy(np.float64)
        labelled = np.isfinite(values)
        if not labelled.all() and labelled_only:
            if not labelled.any():
                raise ValueError(f"none of the {len(names)} crops in {args.data / CROPS_DIR} has a row in "
                                 f"{tables[0]}: nothing to train or evaluate on")
            print(f"skipping {int((~labelled).sum())} of {len(names)} crops without a CTF row in {tables[0]}",
                  file=sys.stderr)
            names = [n for n, keep in zip(names, labelled) if keep]
            crops, values = crops[labelled], values[labelled]
        return names, crops, values
    from cryorl.perception.crops import simulated_crop_dataset

    crops, table = simulated_crop_dataset(seeds)
    return list(table["hole"]), crops, table["true_ctf"].to_numpy()


def _attack(args: argparse.Namespace):
    from cryorl.perception.robust import Attack

    if getattr(args, "adversarial", None) == "fgsm" or getattr(args, "method", None) == "fgsm":
        return Attack.fgsm(args.epsilon, norm=args.norm)
    return Attack(epsilon=args.epsilon, steps=args.attack_steps, step_size=args.step_size, norm=args.norm)


def _perception_train(args: argparse.Namespace) -> int:
    """``cryorl perception train``: one process or, under torchrun with --distributed, one of many (rank 0 writes)."""
    import numpy as np
    import torch

    from cryorl.outputs import check_output_folder, output_folder
    from cryorl.perception import distributed
    from cryorl.perception.predictor import HoleQualityPredictor

    check_output_folder(args.out, overwrite=args.overwrite, what="predictor", inputs=[args.data])
    checkpoint = args.checkpoint or args.out.with_name(f"{args.out.name}.checkpoint.pt")
    if checkpoint.exists() and not args.resume:
        raise FileExistsError(f"{checkpoint} holds the checkpoint of an interrupted run: pass --resume to continue "
                              "it, or --checkpoint to put this run's elsewhere")
    if args.resume and not checkpoint.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint}")
    if not 0.0 < args.labelled_fraction <= 1.0:
        raise ValueError(f"--labelled-fraction must be in (0, 1], got {args.labelled_fraction:g}")
    processes = distributed.start(args.backend) if args.distributed else distributed.current()
    try:
        semi = args.semi_supervised is not None
        _, crops, ctf = _perception_data(args, args.grids, labelled_only=not semi)
        if ctf is None:
            raise ValueError(f"no CTF table (target_CTF_*.csv or CTF_*_by_hl.csv) in {args.data} to train on")
        rng = np.random.default_rng(args.seed)
        labelled = np.isfinite(ctf)
        if args.labelled_fraction < 1.0:
            labelled &= rng.random(len(crops)) < args.labelled_fraction
        unlabelled = crops[~labelled] if semi else None
        crops, ctf = crops[labelled], ctf[labelled]
        if args.data is not None:                     # hold out a fifth of the session's measured holes
            held = rng.random(len(crops)) < 0.2
            crops, ctf, val_crops, val_ctf = crops[~held], ctf[~held], crops[held], ctf[held]
        else:
            _, val_crops, val_ctf = _perception_data(argparse.Namespace(data=None), args.val_grids)

        def make_predictor() -> HoleQualityPredictor:
            torch.manual_seed(args.seed)              # the same initial weights in every process and run
            return HoleQualityPredictor(args.backbone, target=args.target, input_size=args.input_size)

        options = {"lr_scaling": args.lr_scaling, "accumulate": args.accumulate, "compression": args.grad_compression,
                   "warmup": args.warmup_epochs / args.epochs if args.warmup_epochs is not None else 0.15}
        method, search = _semi_supervised(args, make_predictor, crops, ctf, unlabelled, (val_crops, val_ctf),
                                          options) if semi else (None, None)
        predictor = make_predictor()
        attack = _attack(args) if args.adversarial else None
        history = predictor.fit(crops, ctf, validation=(val_crops, val_ctf), epochs=args.epochs,
                                batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                progress=not args.quiet and processes.main, adversarial=attack, semi=method,
                                unlabelled=unlabelled, checkpoint=checkpoint, resume=args.resume, **options)
        if not processes.main:
            return 0
        with output_folder(args.out, overwrite=args.overwrite, what="predictor", inputs=[args.data]) as out:
            predictor.save(out, {"train": str(args.data or f"simulated grids {args.grids}"),
                                 "labelled_crops": int(len(crops)), "labelled_fraction": args.labelled_fraction,
                                 "validation": f"a fifth of {args.data}" if args.data else
                                 f"simulated grids {args.val_grids}", "epochs": args.epochs,
                                 "adversarial": attack.describe() if attack else None,
                                 "semi_supervised": method.describe() if method else None,
                                 "augment_policy": method.policy.to_dict() if method else None,
                                 "processes": processes.world, "global_batch": args.batch_size,
                                 "history": history.to_dict(orient="records")})
            if search is not None:
                search.to_csv(out / "policy_search.csv", index=False)
        checkpoint.unlink(missing_ok=True)            # the run finished: its checkpoint is spent
        print(history.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"predictor in {args.out}")
        return 0
    finally:
        if args.distributed:
            distributed.stop()


def _semi_supervised(args: argparse.Namespace, make_predictor, crops, ctf, unlabelled, validation, options):
    """FixMatch with the policy named by --augment-policy (default, a JSON file, or searched now)."""
    import dataclasses
    import json

    from cryorl.perception.augment import DEFAULT_POLICY, AugmentPolicy
    from cryorl.perception.semi import FixMatch, search_policy

    if unlabelled is None or len(unlabelled) == 0:
        raise ValueError("--semi-supervised needs unlabelled crops: a --labelled-fraction below 1, or a session "
                         "whose CTF table lacks some holes")
    policy, search = DEFAULT_POLICY, None
    if args.augment_policy not in ("default", "search"):
        path = Path(args.augment_policy)
        try:
            policy = AugmentPolicy.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise FileNotFoundError(f"--augment-policy {path}: no such file (or say 'default' or 'search')") from None
        except (json.JSONDecodeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None
    method = FixMatch(confidence=args.confidence, weight=args.unlabelled_weight, ratio=args.unlabelled_ratio,
                      policy=policy, temperature=args.temperature)
    if args.augment_policy == "search":
        policy, search = search_policy(make_predictor, crops, ctf, unlabelled, validation,
                                       candidates=args.policy_trials, epochs=args.search_epochs, method=method,
                                       seed=args.seed, batch_size=args.batch_size, lr=args.lr,
                                       **{k: v for k, v in options.items() if k != "compression"})
        method = dataclasses.replace(method, policy=policy)
    return method, search


def _perception_explain(args: argparse.Namespace) -> int:
    """``cryorl perception explain``: attribution maps of the holes predicted worst, as a PNG grid."""
    from cryorl.outputs import check_output_file
    from cryorl.perception import explain
    from cryorl.perception.predictor import HoleQualityPredictor

    check_output_file(args.out, overwrite=args.overwrite)
    if args.holes < 1:
        raise ValueError(f"--holes must be at least 1, not {args.holes}")
    predictor = HoleQualityPredictor.load(args.model)
    causes = None
    if args.data is None:                             # simulated grids: the cause of each hole is known
        from cryorl.perception.crops import simulated_crop_dataset

        crops, table = simulated_crop_dataset(args.grids)
        names, truth, causes = list(table["hole"]), table["true_ctf"].to_numpy(), explain.simulated_cause(table)
    else:
        names, crops, truth = _perception_data(args, None, labelled_only=False)
    predicted = predictor.predict(crops)
    chosen = explain.select_holes(predicted, causes, per_cause=args.holes, count=args.holes)
    methods = None if args.method == "both" else (args.method,)
    baseline = explain.good_reference(predictor, crops) if args.baseline == "good" else "zeros"
    explain.explanation_grid(predictor, crops[chosen], args.out, names=[names[i] for i in chosen],
                             truth=None if truth is None else truth[chosen],
                             causes=None if causes is None else causes[chosen], methods=methods, steps=args.steps,
                             baseline=baseline)
    print(f"explanations of {len(chosen)} holes in {args.out}")
    return 0


def _perception(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    from cryorl.perception.predictor import HoleQualityPredictor

    if args.perception_command == "models":
        from cryorl.perception import list_models, model_table

        table = model_table(list_models(args.pattern))
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        return 0
    if args.perception_command == "train":
        return _perception_train(args)
    if args.perception_command == "explain":
        return _perception_explain(args)
    if args.perception_command == "predict":
        from cryorl.outputs import check_output_file

        check_output_file(args.out, overwrite=args.overwrite)
    predictor = HoleQualityPredictor.load(args.model)
    # predictions are for every crop, measured or not
    names, crops, ctf = _perception_data(args, args.grids, labelled_only=args.perception_command != "predict")
    if args.perception_command == "evaluate":
        if ctf is None:
            raise ValueError(f"no CTF table in {args.data} to evaluate against")
        for key, value in predictor.evaluate(crops, ctf, args.threshold).items():
            print(f"{key:14s} {value:.4f}" if isinstance(value, float) else f"{key:14s} {value}")
        return 0
    if args.perception_command == "attack":
        import pandas as pd

        if ctf is None:
            raise ValueError(f"no CTF table in {args.data} to attack against")
        attack = _attack(args)
        rows = {"clean": predictor.evaluate(crops, ctf, args.threshold),
                attack.describe(): predictor.evaluate_attacked(crops, ctf, attack, args.threshold, seed=args.seed)}
        print(pd.DataFrame(rows).T.to_string(float_format=lambda v: f"{v:.4f}"))
        return 0
    from cryorl.fileio import atomic_write_text

    predicted = predictor.predict(crops, progress=not args.quiet)
    atomic_write_text(args.out, "".join(f"{n} {v:.2f}\n" for n, v in zip(names, predicted)))
    print(f"{len(names)} predictions (CryoRL format: name, CTFMaxRes) in {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    import torch

    from cryorl.agents.training import load_config, train
    from cryorl.resources import HYPERPARAMS_DIR

    torch.set_num_threads(args.threads)
    config = load_config(args.config or HYPERPARAMS_DIR / f"{args.algo}.yml")
    run_dir = args.run_dir or Path("runs") / f"{config.algo}-seed{args.seed}"
    policy = train(config, run_dir, seed=args.seed, timesteps=args.timesteps, progress_bar=not args.no_progress)
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
    parser.add_argument("--timesteps", type=int, default=None, help="override n_timesteps")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(run=_train)
    return parser


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``cryorl: …``) and exit status 2, like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from cryorl import __version__
    from cryorl.reporting.benchmark import DEFAULT_AGENTS, PUBLISHED

    parser = _Parser(prog="cryorl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cryorl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    overwrite = "replace an existing --out as a whole (without it, a folder or file that exists is refused)"

    data = commands.add_parser("data", help="download and inspect real data").add_subparsers(dest="data_command",
                                                                                             required=True)
    download = data.add_parser("download", help="fetch a public dataset, verifying SHA-256")
    download.add_argument("name", choices=["aldolase"])
    download.add_argument("--dest", type=Path, default=None, help="folder (default: the cache, $CRYORL_CACHE)")
    download.add_argument("--era", choices=["2023", "2022"], default="2023",
                          help="2023: regressor predictions (default); 2022: the first paper's classifier split")
    download.add_argument("--split", choices=["train", "val", "all"], default="all")
    download.add_argument("--base-url", default=None, help="mirror address instead of the public repository")
    download.add_argument("--overwrite", action="store_true",
                          help="replace files of the same names whose content differs from the published files")
    download.set_defaults(run=_data_download)

    info = data.add_parser("info", help="hierarchy counts and quality statistics of a downloaded split")
    info.add_argument("dir", type=Path)
    info.add_argument("--split", default="train")
    info.add_argument("--era", choices=["2023", "2022"], default=None)
    info.add_argument("--threshold", type=float, default=6.0, help="good CTFMaxRes threshold (Å)")
    info.set_defaults(run=_data_info)

    evaluate = commands.add_parser("evaluate", help="evaluate agents over seeded random starts and budgets")
    evaluate.add_argument("--agent", nargs="+", required=True,
                          help="random, predict-rank, greedy-local, greedy-2t, snowball, planner, planner-online, "
                               "oracle, dqn, ppo, a saved policy folder, or human-trace:PATH")
    evaluate.add_argument("--data", type=Path, default=None, help="a CryoRL-format folder (default: simulated grid)")
    evaluate.add_argument("--split", default="val")
    evaluate.add_argument("--era", choices=["2023", "2022"], default=None,
                          help="2023: regressor predictions; 2022: classifier probabilities (default: detect)")
    evaluate.add_argument("--grid-seed", type=int, default=0, help="seed of the simulated grid (without --data)")
    evaluate.add_argument("--budgets", type=float, nargs="+", default=[120, 240, 480], help="minutes")
    evaluate.add_argument("--episodes", type=int, default=50)
    evaluate.add_argument("--seed", type=int, default=0, help="episode i starts from the hole of reset(seed + i)")
    evaluate.add_argument("--costs", default="cryorl-2023", help="cost preset (cryorl-2023, cryorl-2022, ...)")
    evaluate.add_argument("--threshold", type=float, default=6.0, help="good CTFMaxRes threshold (Å)")
    evaluate.add_argument("--out", type=Path, required=True, help="folder for summary.csv and trajectories.csv")
    evaluate.add_argument("--overwrite", action="store_true", help=overwrite)
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument("--threads", type=int, default=1, help="torch threads for learned agents (1 is fastest)")
    evaluate.set_defaults(run=_evaluate)

    plan = commands.add_parser("plan", help="a policy's ordered targets for a session's time left (plan.csv, a "
                                            "SerialEM .nav or Leginon target names), re-planned as exposures come in")
    plan.add_argument("--data", type=Path, required=True, help="the session: a CryoRL-format folder")
    plan.add_argument("--split", default="train")
    plan.add_argument("--era", choices=["2023", "2022"], default=None,
                      help="2023: regressor predictions; 2022: classifier probabilities (default: detect)")
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
    plan.add_argument("--overwrite", action="store_true", help=overwrite)
    plan.set_defaults(run=_plan)

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
    simulate.add_argument("--overwrite", action="store_true", help=overwrite)
    simulate.set_defaults(run=_simulate)

    holes = commands.add_parser("holes", help="find holes in a session's patch images and write the hole table")
    holes.add_argument("dir", type=Path, help="a session folder (with patches/) or a folder of patch images")
    holes.add_argument("--ctf", type=Path, default=None, help="CryoRL CTF CSV: keep and name its holes")
    holes.add_argument("--predictions", type=Path, default=None)
    holes.add_argument("--hole-diameter", type=float, default=1.0, help="µm (R1/1: 1.0, R1.2/1.3: 1.2)")
    holes.add_argument("--hole-pitch", type=float, default=2.0, help="µm centre to centre (R1/1: 2.0)")
    holes.add_argument("--out", type=Path, required=True, help="hole table (.csv or .parquet)")
    holes.add_argument("--quiet", action="store_true")
    holes.add_argument("--overwrite", action="store_true", help=overwrite)
    holes.set_defaults(run=_holes)

    look = commands.add_parser("look", help="render a session's atlas, a square with found holes, hole crops")
    look.add_argument("dir", type=Path)
    look.add_argument("--out", type=Path, default=None, help="default DIR/look")
    look.add_argument("--hole-diameter", type=float, default=1.0)
    look.add_argument("--hole-pitch", type=float, default=2.0)
    look.add_argument("--overwrite", action="store_true", help=overwrite)
    look.set_defaults(run=_look)

    perception = commands.add_parser("perception", help="hole-quality models: list, train (adversarial, "
                                                        "semi-supervised, distributed), evaluate, attack, explain, "
                                                        "predict")
    sub = perception.add_subparsers(dest="perception_command", required=True)
    models = sub.add_parser("models", help="registered backbones with parameters and GMACs")
    models.add_argument("--pattern", default="*")
    train = sub.add_parser("train", help="train a predictor on simulated crops (or a session's crops)")
    train.add_argument("--backbone", default="resnet10_small")
    train.add_argument("--target", choices=["regression", "bins"], default="regression")
    train.add_argument("--input-size", type=int, default=96)
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--overwrite", action="store_true", help=overwrite)
    evaluate_p = sub.add_parser("evaluate", help="MAE, correlation and accuracy at the threshold")
    evaluate_p.add_argument("--model", type=Path, required=True)
    evaluate_p.add_argument("--threshold", type=float, default=6.0)
    attack_p = sub.add_parser("attack", help="MAE and accuracy on clean crops and under a PGD or FGSM attack of a "
                                             "given budget")
    attack_p.add_argument("--model", type=Path, required=True)
    attack_p.add_argument("--threshold", type=float, default=6.0)
    attack_p.add_argument("--method", choices=["pgd", "fgsm"], default="pgd")
    attack_p.add_argument("--seed", type=int, default=0)
    train.add_argument("--lr-scaling", choices=["none", "linear", "sqrt"], default="none",
                       help="scale --lr with the global batch relative to 64 crops (large-batch training)")
    train.add_argument("--warmup-epochs", type=float, default=None,
                       help="epochs of learning-rate warm-up (default 15 %% of --epochs)")
    train.add_argument("--accumulate", type=int, default=1,
                       help="micro-batches per step and process (gradient accumulation); --batch-size is global")
    train.add_argument("--checkpoint", type=Path, default=None,
                       help="checkpoint after every epoch here (default OUT.checkpoint.pt beside --out; removed "
                            "when the run finishes)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run from its checkpoint")
    dist_options = train.add_argument_group(
        "distributed data-parallel training", "launch with torchrun, e.g. torchrun --standalone --nproc-per-node 2 "
        "-m cryorl perception train --distributed ...; rank 0 validates and writes")
    dist_options.add_argument("--distributed", action="store_true",
                              help="join torchrun's process group: DDP, each process a share of every batch")
    dist_options.add_argument("--backend", choices=["auto", "gloo", "nccl"], default="auto",
                              help="auto: NCCL with CUDA, gloo on CPU")
    dist_options.add_argument("--grad-compression", choices=["none", "fp16", "powersgd"], default="none",
                              help="DDP communication hook for the gradients")
    semi_options = train.add_argument_group(
        "semi-supervised training", "FixMatch on unlabelled crops (needs --target bins)")
    semi_options.add_argument("--semi-supervised", choices=["fixmatch"], default=None,
                              help="semi-supervised training: unlabelled crops pseudo-labelled by FixMatch")
    semi_options.add_argument("--labelled-fraction", type=float, default=1.0,
                              help="use the CTFMaxRes of only this fraction of the training crops (the rest are "
                                   "unlabelled with --semi-supervised, left out without)")
    semi_options.add_argument("--confidence", type=float, default=0.3,
                              help="FixMatch's confidence threshold (the largest CTF-bin probability)")
    semi_options.add_argument("--temperature", type=float, default=0.5,
                              help="sharpening of the pseudo-labels (0: hard labels, FixMatch proper)")
    semi_options.add_argument("--unlabelled-weight", type=float, default=1.0)
    semi_options.add_argument("--unlabelled-ratio", type=int, default=3, help="unlabelled crops per labelled one")
    semi_options.add_argument("--augment-policy", default="default",
                              help="strong augmentation: 'default', 'search' (learned on held-out labelled holes), "
                                   "or a policy JSON file")
    semi_options.add_argument("--policy-trials", type=int, default=8, help="candidate policies of the search")
    semi_options.add_argument("--search-epochs", type=int, default=1, help="epochs of the search's first round")
    train.add_argument("--adversarial", choices=["pgd", "fgsm"], default=None,
                       help="adversarial (min-max) training: each batch replaced by its PGD or FGSM perturbation")
    for command in (train, attack_p):
        command.add_argument("--epsilon", type=float, default=0.05,
                             help="attack budget, in units of an image's standard deviation (inputs are normalised)")
        command.add_argument("--norm", choices=["linf", "l2"], default="linf")
        command.add_argument("--attack-steps", type=int, default=5, help="PGD steps")
        command.add_argument("--step-size", type=float, default=None, help="PGD step (default 2.5·ε/steps)")
    explain_p = sub.add_parser("explain", help="what made a hole bad: Grad-CAM and integrated-gradients maps of the "
                                               "holes predicted worst (per cause on simulated grids), as a PNG")
    explain_p.add_argument("--model", type=Path, required=True)
    explain_p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    explain_p.add_argument("--holes", type=int, default=2,
                           help="holes to show: per cause on simulated grids, in all for a session")
    explain_p.add_argument("--method", choices=["both", "integrated_gradients", "gradcam"], default="both",
                           help="both: Grad-CAM where the backbone has a late convolution, and integrated gradients")
    explain_p.add_argument("--baseline", choices=["good", "flat"], default="good",
                           help="integrated gradients from a typical good hole (what makes this one worse) or a "
                                "flat image")
    explain_p.add_argument("--steps", type=int, default=32, help="integrated-gradients steps")
    explain_p.add_argument("--overwrite", action="store_true", help=overwrite)
    predict = sub.add_parser("predict", help="write a CryoRL predictions file for a session's crops")
    predict.add_argument("--model", type=Path, required=True)
    predict.add_argument("--out", type=Path, required=True)
    predict.add_argument("--overwrite", action="store_true", help=overwrite)
    for command, grids in ((train, [1, 2, 3, 4]), (evaluate_p, [9]), (attack_p, [9]), (explain_p, [9]),
                           (predict, [9])):
        command.add_argument("--data", type=Path, default=None, help="a session folder with crops/ "
                                                                     "(default: simulated grids)")
        command.add_argument("--grids", type=int, nargs="+", default=grids, help="simulated grid seeds")
        command.add_argument("--threads", type=int, default=2)
        command.add_argument("--quiet", action="store_true")
    train.add_argument("--val-grids", type=int, nargs="+", default=[8],
                       help="simulated validation grid seeds (with --data: a fifth of its holes instead)")
    models.add_argument("--threads", type=int, default=1)
    for command in (models, train, evaluate_p, attack_p, explain_p, predict):
        command.set_defaults(run=_perception)

    bench = commands.add_parser("benchmark", help="every agent, the oracle and human traces on one grid: a report "
                                                  "folder with report.md, tables and plots")
    bench.add_argument("--data", type=Path, default=None, help="a CryoRL-format folder (default: simulated grid)")
    bench.add_argument("--split", default="val")
    bench.add_argument("--era", choices=["2023", "2022"], default=None)
    bench.add_argument("--grid-seed", type=int, default=0, help="seed of the simulated grid (without --data)")
    bench.add_argument("--agents", nargs="+", default=list(DEFAULT_AGENTS),
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
    bench.add_argument("--overwrite", action="store_true", help=overwrite)
    bench.add_argument("--no-steps", action="store_true", help="do not write steps.csv.gz (one row per step)")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.add_argument("--threads", type=int, default=1, help="torch threads for learned agents (1 is fastest)")
    bench.set_defaults(run=_benchmark)

    add_train_arguments(commands.add_parser(
        "train", help="train a learned agent (masked DQN or MaskablePPO) with Stable-Baselines3",
        description="Train a learned collection agent on CryoEM-v0 (the same as agents/train.py). Run folders hold "
                    "SB3 checkpoints, which unpickle Python objects when resumed: resume only your own runs."))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; an error is one line on stderr and a non-zero exit (``CRYORL_DEBUG=1``: traceback)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("cryorl: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # every failure reaches the user as one line
        if os.environ.get("CRYORL_DEBUG"):
            raise
        print(f"cryorl: {_one_line(error)}", file=sys.stderr)
        return 2


def _one_line(error: BaseException) -> str:
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    if isinstance(error, KeyError) and len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]                      # KeyError quotes its message
    plain = isinstance(error, (ValueError, LookupError, FileExistsError, FileNotFoundError, RuntimeError)) or \
        type(error).__module__.startswith("cryorl")
    return text if plain and text else f"{type(error).__name__}: {text}".rstrip(": ")


if __name__ == "__main__":
    sys.exit(main())
