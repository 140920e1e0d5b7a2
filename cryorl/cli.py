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
        if args.crops:
            from cryorl.crop_store import download_crops

            if args.era != "2023":
                raise ValueError("--crops: the published hole crops belong to the 2023 release (--era 2023)")
            dest = download_crops(args.dest, split=args.split, base_url=args.base_url, workers=args.workers,
                                  overwrite=args.overwrite, progress=not args.quiet)
            print(f"hole crops in {dest}; perception commands read them with --data {dest} --split train|val")
            return 0
        dest = download_dataset(args.name, args.dest, era=args.era, split=args.split, base_url=args.base_url,
                                overwrite=args.overwrite)
    except DownloadError as error:
        print(f"cryorl: {_one_line(error)}", file=sys.stderr)
        return 2
    print(f"data in {dest}")
    return 0


def _grid(args: argparse.Namespace, path: Path | None = None, **options):
    """The grid that ``--data`` (or ``path``) names, through :func:`cryorl.formats.load_grid`."""
    from cryorl.formats import load_grid

    options.setdefault("ctf", getattr(args, "ctf", None))
    return load_grid(path or args.data, getattr(args, "split", None), era=getattr(args, "era", None), **options)


def _scored_grid(args: argparse.Namespace):
    """``--data``'s grid restricted to its measured holes, for commands that score agents; notes on stderr."""
    grid = _grid(args).measured()
    for note in grid.notes:
        print(f"cryorl: {note}", file=sys.stderr)
    return grid


def _data_verify(args: argparse.Namespace) -> int:
    from cryorl.download import verify_dataset

    rows = verify_dataset(args.dir, era=args.era)
    if args.crops:
        from cryorl.crop_store import verify_crops

        rows += verify_crops(args.dir)
    for file, status in rows:
        print(f"{status:8s} {file}")
    differs = [file for file, status in rows if status == "differs"]
    present = [file for file, status in rows if status == "ok"]
    if differs:
        raise ValueError(f"{len(differs)} file(s) in {args.dir} differ from the published ones (first: {differs[0]}); "
                         "fetch them again with `cryorl data download aldolase --overwrite`")
    if not present:
        raise FileNotFoundError(f"no published file in {args.dir}")
    print(f"{len(present)} file(s) verified in {args.dir}")
    return 0


def _data_info(args: argparse.Namespace) -> int:
    import warnings

    import numpy as np

    from cryorl.formats import find_format
    from cryorl.gridstats import grid_statistics

    fmt = find_format(args.dir)
    present = fmt.splits(args.dir.expanduser())
    grid = _grid(args, args.dir)
    print(f"{args.dir}: {grid.format} ({fmt.description})" + (f"; splits: {', '.join(present)}" if present else ""))
    atlas = grid.atlas
    print(atlas)
    if grid.split:
        print(f"split: {grid.split}")
    trace = grid.human_trace()
    print(f"human trace: {f'{len(trace)} exposed holes from {trace.source}' if trace else 'none'}")
    print(f"hole crops: {grid.crops if grid.crops is not None else 'none'}")
    print(f"stage positions: {'yes' if grid.stage is not None else 'none'}")
    for note in grid.notes:
        print(note)
    measured = np.isfinite(atlas.true_ctf)
    with np.errstate(all="ignore"), warnings.catch_warnings():      # the quality of no measured hole is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = grid_statistics(atlas, args.threshold)
    hierarchy = list(stats)[:9]                     # the counts; the rest describes the measured holes' quality
    if not measured.any():
        stats = {k: stats[k] for k in hierarchy}
        print("no hole has a measured CTFMaxRes: give the CTF results (--ctf) for quality statistics")
    elif not measured.all():
        quality = grid_statistics(atlas.subset(measured), args.threshold)
        stats = {**{k: stats[k] for k in hierarchy}, **{k: v for k, v in quality.items() if k not in hierarchy}}
        print(f"quality statistics of the {int(measured.sum())} measured holes:")
    for key, value in stats.items():
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
    inputs = [args.data, args.ctf, *_agent_paths(args.agent)]
    check_output_folder(args.out, overwrite=args.overwrite, what="evaluation", inputs=inputs)
    torch.set_num_threads(args.threads)
    env_kwargs = dict(costs=args.costs, threshold=args.threshold)
    if args.data is not None:
        env = CryoEMEnv(_scored_grid(args).atlas, **env_kwargs)
    else:
        env = CryoEMEnv(grid_seed=args.grid_seed, **env_kwargs)
    policies = [make_policy(agent, seed=args.seed) for agent in args.agent]
    labels = [p.name for p in policies]
    repeated = [label for i, label in enumerate(labels) if label in labels[:i]]
    if repeated:
        raise ValueError(f"--agent: two agents are labelled {repeated[0]}; label a saved policy folder with "
                         "NAME=PATH")
    with output_folder(args.out, overwrite=args.overwrite, what="evaluation", inputs=inputs) as out:
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

    from cryorl.outputs import check_output_folder, output_folder, reserve_output
    from cryorl.planning import SessionOver, make_plan, read_measured

    inputs = [args.data, args.ctf, *_agent_paths([args.agent])] + ([args.measured] if args.measured else [])
    check_output_folder(args.out, overwrite=args.overwrite, what="plan", inputs=inputs)
    if args.watch and args.measured is None:
        raise ValueError("--watch needs --measured FILE (the file the session appends its exposures to)")
    grid = _grid(args)
    atlas, stage = grid.atlas, grid.stage
    for note in grid.notes:
        print(f"cryorl: {note}", file=sys.stderr)

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
    # --watch holds --out for the whole session; each plan replaces --out as a whole (its plan.csv and plan.nav
    # change together), a re-plan only while --out holds just the files the last plan wrote
    reservation = reserve_output(args.out, what="plan") if args.watch else None
    try:
        with output_folder(args.out, overwrite=args.overwrite, what="plan", inputs=inputs) as out:
            written = plan.write(out)
        report(plan)
        print("wrote " + ", ".join(str(args.out / path.name) for path in written))
        last = None
        while args.watch:                        # re-plan whenever the measured file changes, until the time is up
            stat = args.measured.stat() if args.measured.exists() else None
            state = (stat.st_size, stat.st_mtime_ns) if stat else None
            if state != last:
                last = state
                try:
                    plan = planned(complete_lines_only=True)
                except SessionOver as error:
                    print(f"session over: {error}")
                    return 0
                with output_folder(args.out, overwrite=True, what="plan", inputs=inputs,
                                   only=[path.name for path in written]) as out:
                    written = plan.write(out)
                report(plan)
            time.sleep(args.interval)
        return 0
    finally:
        if reservation is not None:
            reservation.release()


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
    inputs = [args.data, args.ctf, *args.trace, *_agent_paths(args.agents)]
    check_output_folder(args.out, overwrite=args.overwrite, what="report", inputs=inputs)
    torch.set_num_threads(args.threads)
    traces = [load_human_trace(path) for path in args.trace]
    if args.data is not None:
        opened = _scored_grid(args)
        atlas, grid = opened.atlas, opened.label
        if not args.trace and opened.trace is not None:
            traces.append(opened.human_trace("human operator"))
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
          f"load it with cryorl.load_grid({str(args.out)!r}), or give it as --data")
    return 0


def _holes(args: argparse.Namespace) -> int:
    from cryorl.images.session_holes import atlas_from_images
    from cryorl.outputs import check_output_file, output_file

    inputs = [args.dir, args.ctf, args.predictions]
    check_output_file(args.out, overwrite=args.overwrite, what="hole table", inputs=inputs)
    atlas, images = atlas_from_images(args.dir, args.ctf, args.predictions, hole_diameter_um=args.hole_diameter,
                                      hole_pitch_um=args.hole_pitch, progress=not args.quiet)
    with output_file(args.out, overwrite=args.overwrite, what="hole table", inputs=inputs) as tmp:
        atlas.save(tmp)
    print(atlas)
    print(f"{images['detected'].mean():.1%} of holes seen directly, the rest placed by the lattice fit; "
          f"hole table in {args.out}")
    return 0


def _look(args: argparse.Namespace) -> int:
    from cryorl.images.look import look_at_session, look_inputs
    from cryorl.outputs import output_folder

    target = args.out if args.out is not None else args.dir / "look"
    with output_folder(target, overwrite=args.overwrite, what="pictures", inputs=look_inputs(args.dir)) as out:
        paths = look_at_session(args.dir, out, args.hole_diameter, args.hole_pitch)
    for path in paths:
        print(target / Path(path).relative_to(out))
    return 0


def _perception_data(args: argparse.Namespace, seeds: list[int] | None, labelled_only: bool = True):
    """Crops and CTFMaxRes: a data folder's crops labelled by its split's CTF table, or simulated grids."""
    from cryorl.perception.data import labelled_crops, simulated_crops

    if args.data is not None:
        return labelled_crops(args.data, getattr(args, "split", None), labelled_only=labelled_only)
    return simulated_crops(seeds)


def _attack(args: argparse.Namespace):
    from cryorl.perception.robust import Attack

    if getattr(args, "adversarial", None) == "fgsm" or getattr(args, "method", None) == "fgsm":
        return Attack.fgsm(args.epsilon, norm=args.norm)
    return Attack(epsilon=args.epsilon, steps=args.attack_steps, step_size=args.step_size, norm=args.norm)


def _perception_train(args: argparse.Namespace) -> int:
    """``cryorl perception train``: one process or, under torchrun with --distributed, one of many (rank 0 writes)."""
    import numpy as np
    import torch

    from cryorl.outputs import check_output_folder, output_folder, reserve_output
    from cryorl.perception import distributed
    from cryorl.perception.predictor import HoleQualityPredictor
    from cryorl.perception.recipes import RECIPES, apply_recipe

    vars(args).update(apply_recipe(args.recipe, {k: getattr(args, k, None) for k in RECIPES[args.recipe]}))
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
    # rank 0 holds --out (and the checkpoint beside it) for the whole run: a second run is refused, not mixed in
    reservation = reserve_output(args.out, what="predictor") if processes.main else None
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
            return HoleQualityPredictor(args.backbone, target=args.target, loss=args.loss,
                                        input_size=args.input_size)

        options = {"lr_scaling": args.lr_scaling, "accumulate": args.accumulate, "compression": args.grad_compression,
                   "warmup": args.warmup_epochs / args.epochs if args.warmup_epochs is not None else
                   args.warmup_fraction}
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
        if reservation is not None:
            reservation.release()
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
    from cryorl.outputs import check_output_file, output_file
    from cryorl.perception import explain
    from cryorl.perception.predictor import HoleQualityPredictor

    inputs = [args.model, args.data]
    check_output_file(args.out, overwrite=args.overwrite, what="picture", inputs=inputs)
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
    with output_file(args.out, overwrite=args.overwrite, what="picture", inputs=inputs) as tmp:
        explain.explanation_grid(predictor, crops[chosen], tmp, names=[names[i] for i in chosen],
                                 truth=None if truth is None else truth[chosen],
                                 causes=None if causes is None else causes[chosen], methods=methods,
                                 steps=args.steps, baseline=baseline)
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
    if args.perception_command == "score":
        from cryorl.perception.score import score_predictions

        scores = score_predictions(args.predictions, _grid(args).atlas, args.threshold)
        for key, value in scores.items():
            print(f"{key:22s} {value:.4f}" if isinstance(value, float) else f"{key:22s} {value}")
        return 0
    if args.perception_command == "predict":
        from cryorl.outputs import check_output_file

        check_output_file(args.out, overwrite=args.overwrite, what="predictions", inputs=[args.model, args.data])
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
    from cryorl.outputs import output_file

    predicted = predictor.predict(crops, progress=not args.quiet)
    with output_file(args.out, overwrite=args.overwrite, what="predictions", inputs=[args.model, args.data]) as tmp:
        tmp.write_text("".join(f"{n} {v:.2f}\n" for n, v in zip(names, predicted)))
    print(f"{len(names)} predictions (CryoRL format: name, CTFMaxRes) in {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    import torch

    from cryorl.agents.training import load_config, train
    from cryorl.resources import HYPERPARAMS_DIR

    for option, value in (("--timesteps", args.timesteps), ("--imitation-steps", args.imitation_steps)):
        if value is not None and value < 0:
            raise ValueError(f"{option} must be 0 or more, not {value}")
    torch.set_num_threads(args.threads)
    config = load_config(args.config or HYPERPARAMS_DIR / f"{args.algo}.yml")
    run_dir = args.run_dir or Path("runs") / f"{config.algo}-seed{args.seed}"
    policy = train(config, run_dir, seed=args.seed, timesteps=args.timesteps, imitation_steps=args.imitation_steps,
                   progress_bar=not args.no_progress)
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
    parser.set_defaults(run=_train)
    return parser


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``cryorl: …``) and exit status 2, like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from cryorl import __version__
    from cryorl.agents.registry import policy_names
    from cryorl.reporting.benchmark import DEFAULT_AGENTS, PUBLISHED

    parser = _Parser(prog="cryorl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cryorl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    overwrite = "replace an existing --out as a whole (without it, a folder or file that exists is refused)"
    CTF_HELP = "CTF results of an EPU session: a RELION STAR file (rlnCtfMaxResolution) or a CTFFIND folder"  # noqa: N806

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
    download.add_argument("--crops", action="store_true",
                          help="the published hole crops (3,538 PNG files, 215 MB, Git LFS), checked against the "
                               "shipped manifest; resumable")
    download.add_argument("--workers", type=int, default=8, help="parallel downloads (--crops)")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(run=_data_download)

    verify = data.add_parser("verify", help="check published files placed by hand (or downloaded) against their "
                                            "SHA-256")
    verify.add_argument("dir", type=Path)
    verify.add_argument("--era", choices=["2023", "2022"], default=None)
    verify.add_argument("--crops", action="store_true", help="also the published hole crops (DIR/Aldolase/...)")
    verify.set_defaults(run=_data_verify)

    info = data.add_parser("info", help="what a data path holds (format, splits, trace, stage positions, crops, "
                                        "skipped rows) and the grid's hierarchy counts and quality statistics")
    info.add_argument("dir", type=Path, help="any path --data takes")
    info.add_argument("--ctf", type=Path, default=None, help=CTF_HELP)
    info.add_argument("--split", default=None, help="which split (default: the only one)")
    info.add_argument("--era", choices=["2023", "2022"], default=None)
    info.add_argument("--threshold", type=float, default=6.0, help="good CTFMaxRes threshold (Å)")
    info.set_defaults(run=_data_info)

    evaluate = commands.add_parser("evaluate", help="evaluate agents over seeded random starts and budgets")
    evaluate.add_argument("--agent", nargs="+", required=True,
                          help=f"{', '.join(policy_names())}, a saved policy folder (labelled by its path; "
                               "NAME=PATH labels it NAME), or human-trace:PATH")
    evaluate.add_argument("--data", type=Path, default=None,
                          help="a grid: CryoRL folder, simulated session, hole table, EPU session (default: simulated)")
    evaluate.add_argument("--ctf", type=Path, default=None, help=CTF_HELP)
    evaluate.add_argument("--split", default=None, help="which split of --data (default: the only one)")
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
    plan.add_argument("--data", type=Path, required=True,
                      help="the session: a CryoRL folder, simulated session, hole table or EPU session")
    plan.add_argument("--ctf", type=Path, default=None, help=CTF_HELP)
    plan.add_argument("--split", default=None, help="which split of --data (default: the only one)")
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
                       help="epochs of learning-rate warm-up (default: 15 %% of --epochs; papers recipe: 2 %%)")
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
    score = sub.add_parser("score", help="score a predictions file against a grid's measured CTFMaxRes (the papers' "
                                         "conventions: both clipped at 20 Å)")
    score.add_argument("predictions", type=Path, help="CryoRL predictions file (name CTFMaxRes, or name P(good) "
                                                      "P(bad))")
    score.add_argument("--data", type=Path, required=True, help="the grid whose CTF table is the truth")
    score.add_argument("--split", default=None, help="which split of --data (default: the only one)")
    score.add_argument("--era", choices=["2023", "2022"], default=None)
    score.add_argument("--threshold", type=float, default=6.0, help="good CTFMaxRes threshold (Å)")
    score.add_argument("--threads", type=int, default=1)
    score.set_defaults(run=_perception)
    predict = sub.add_parser("predict", help="write a CryoRL predictions file for a session's crops")
    predict.add_argument("--model", type=Path, required=True)
    predict.add_argument("--out", type=Path, required=True)
    predict.add_argument("--overwrite", action="store_true", help=overwrite)
    for command, grids in ((train, [1, 2, 3, 4]), (evaluate_p, [9]), (attack_p, [9]), (explain_p, [9]),
                           (predict, [9])):
        command.add_argument("--data", type=Path, default=None, help="a session folder with crops/ "
                                                                     "(default: simulated grids)")
        command.add_argument("--split", default=None, help="the split of --data whose CTF table labels the crops "
                                                           "(default: the only one)")
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
    bench.add_argument("--data", type=Path, default=None,
                       help="a grid: CryoRL folder, simulated session, hole table, EPU session (default: simulated)")
    bench.add_argument("--ctf", type=Path, default=None, help=CTF_HELP)
    bench.add_argument("--split", default=None, help="which split of --data (default: the only one)")
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
    from cryorl.outputs import one_line

    return one_line(error)


def _agent_paths(agents: list[str]) -> list[Path]:
    """The files and folders named by agent specs (a saved policy folder as PATH or NAME=PATH,
    human-trace:PATH): inputs too."""
    paths = []
    for agent in agents:
        if agent.startswith("human-trace:"):
            paths.append(Path(agent.split(":", 1)[1]))
        elif not os.path.lexists(Path(agent).expanduser()) and "=" in agent:
            paths.append(Path(agent.partition("=")[2]))
        else:
            paths.append(Path(agent))
    return [p for p in paths if os.path.lexists(p.expanduser())]


if __name__ == "__main__":
    sys.exit(main())
