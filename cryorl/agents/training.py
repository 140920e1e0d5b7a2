"""Training learned agents with Stable-Baselines3: environments from a config, evaluation with the domain metric
(good exposures within the budget), checkpoints that resume, and the trained policy saved as plain weights.

The config (``agents/hyperparams/*.yml``) is cryorl's own format, laid out like rl-zoo3's (one section per
environment id, SB3 hyper-parameters at its top level) but with keys rl-zoo3 does not know: ``algo``,
``n_timesteps``, ``env`` (training grids), ``eval`` (held-out grids), ``imitation`` (DAgger from the planner before
RL, :mod:`cryorl.agents.imitation`), ``checkpoint_freq`` and ``keep_checkpoints``; it is read and checked into a
typed :class:`~cryorl.agents.config.TrainingConfig`. ``cryorl train`` reads it; rl-zoo3 cannot.

Every training environment carries the planner's signals (:class:`~cryorl.agents.signals.PlannerSignals`). A
source ``{grid: …, predictions: classifier}`` turns each simulated grid's predictions into a two-class classifier's
probabilities (:func:`cryorl.quality.as_classifier`), so one network learns both kinds of prediction; a source's
``costs`` replace ``env.costs`` for that copy (the observation carries the costs).
``env.vec_env: subproc`` runs the copies in subprocesses (SB3's ``SubprocVecEnv``).
"""
from __future__ import annotations

import copy
import json
import os
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from stable_baselines3.common.callbacks import BaseCallback

from cryorl.agents.config import EnvSettings, EvalSettings, ImitationSettings, Source, TrainingConfig, load_config
from cryorl.agents.evaluation import evaluate_policy, summarize
from cryorl.agents.learned import LearnedPolicy, scorer_from_model
from cryorl.agents.signals import PlannerSignals
from cryorl.atlas import Atlas
from cryorl.env import CryoEMEnv
from cryorl.fileio import atomic_path, atomic_write_text, remove_orphaned_parts
from cryorl.grids import SimulatedGrid
from cryorl.quality import as_classifier
from cryorl.synth import GridSpec, simulate_atlas

__all__ = ["train_agent", "RandomBudget", "OpportunityCost", "load_config", "TrainingConfig", "training_env_fns",
           "make_training_env", "make_eval_atlases", "EvalGoodExposures", "train", "real_part", "imitation_for_run",
           "rl_steps", "eval_for_run", "IMITATION_FLOOR"]


class RandomBudget(gym.Wrapper):
    """Draws each episode's budget (minutes) from ``budgets`` with its own generator (seeded by the first seeded
    reset), so one policy learns every budget; one reset of the environment per episode."""

    def __init__(self, env: gym.Env, budgets: list[float]) -> None:
        super().__init__(env)
        self.budgets = [float(b) for b in budgets]
        self._rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        budget = self.budgets[int(self._rng.integers(len(self.budgets)))]
        return self.env.reset(seed=seed, options={**(options or {}), "budget": budget})


class OpportunityCost(gym.Wrapper):
    """Training-time reward: the environment's reward minus ``per_minute`` × the minutes the step took.

    With ``per_minute`` near the rate of good exposures a good planner reaches (≈ 0.7 per minute), a step is worth
    what it gains over spending its minutes at that rate — the objective becomes good exposures per minute, the
    domain metric, instead of a per-step discount that barely notices a minute saved. The environment's own reward
    (the papers') is unchanged; evaluation counts good exposures.
    """

    def __init__(self, env: gym.Env, per_minute: float) -> None:
        super().__init__(env)
        self.per_minute = float(per_minute)
        self._elapsed = 0.0

    def reset(self, **kwargs) -> tuple[dict, dict]:
        obs, info = self.env.reset(**kwargs)
        self._elapsed = info["elapsed"]
        return obs, info

    def step(self, action: int) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        minutes = info["elapsed"] - self._elapsed
        self._elapsed = info["elapsed"]
        return obs, reward - self.per_minute * minutes, terminated, truncated, info


def real_part(data: dict[str, Any]) -> Atlas:
    """A real split, optionally restricted to some atlas tiles (``tiles``: indices in the split's tile order)."""
    from cryorl.formats import load_grid

    atlas = load_grid(Path(data["dir"]).expanduser(), data.get("split")).atlas
    if "tiles" in data:
        tiles = [int(t) for t in data["tiles"]]
        atlas = atlas.subset(np.isin(atlas.tile, tiles), source=f"{atlas.source} tiles {tiles}")
    return atlas


def _source_env(source: Source, settings: EnvSettings, max_holes: int, atlas: Atlas | None) -> CryoEMEnv:
    common = {"costs": source.costs or settings.costs, "threshold": settings.threshold,
              "max_holes": max_holes, "budget": max(settings.budgets)}
    if atlas is not None:
        classifier = source.predictions == "classifier" and atlas.has_ctf_predictions
        return CryoEMEnv(as_classifier(atlas) if classifier else atlas, **common)
    transform = as_classifier if source.predictions == "classifier" else None
    return CryoEMEnv(grid=SimulatedGrid(GridSpec.from_mapping(source.grid), resample=True, transform=transform),
                     **common)


def training_env_fns(settings: EnvSettings | dict[str, Any]) -> list:
    """One environment factory per training source (simulated grids redrawn every episode, or real parts, each
    loaded once), padded to a common ``max_holes``: budgets drawn per episode, the opportunity cost, the planner's
    signals."""
    if not isinstance(settings, EnvSettings):
        settings = EnvSettings.parse(settings)
    atlases = [real_part(s.data) if s.data is not None else None for s in settings.sources]
    max_holes = max(len(a) if a is not None else GridSpec.from_mapping(s.grid).n_holes
                    for s, a in zip(settings.sources, atlases))

    def factory(source: Source, atlas: Atlas | None):
        def build():
            env = RandomBudget(_source_env(source, settings, max_holes, atlas), list(settings.budgets))
            per_minute = settings.opportunity_cost
            return PlannerSignals(OpportunityCost(env, per_minute) if per_minute else env)
        return build

    return [factory(s, a) for s, a in zip(settings.sources, atlases)]


def make_training_env(settings: EnvSettings | dict[str, Any], seed: int, fns: list | None = None):
    """The vectorized training environment: one copy per source (:func:`training_env_fns`, or the factories
    ``fns`` made by it), each in a ``Monitor``; in subprocesses with ``vec_env: subproc``."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    if not isinstance(settings, EnvSettings):
        settings = EnvSettings.parse(settings)
    fns = [lambda fn=fn: Monitor(fn()) for fn in (fns or training_env_fns(settings))]
    venv = SubprocVecEnv(fns) if settings.vec_env == "subproc" else DummyVecEnv(fns)
    venv.seed(seed)
    return venv


def make_eval_atlases(settings: EvalSettings | dict[str, Any]) -> list[Atlas]:
    """Held-out grids: simulated (``grid`` + ``grid_seeds``) and/or real parts (``data``)."""
    if not isinstance(settings, EvalSettings):
        settings = EvalSettings.parse(settings)
    atlases = [simulate_atlas(seed, GridSpec.from_mapping(settings.grid)) for seed in settings.grid_seeds]
    if settings.data is not None:
        atlases.append(real_part(settings.data))
    return atlases


def _make_model(config: TrainingConfig, venv, seed: int, tensorboard_log: str | None):
    from sb3_contrib import MaskablePPO

    from cryorl.agents.sb3 import HoleDQNPolicy, HoleMaskablePolicy, MaskedDQN

    kwargs = copy.deepcopy(config.hyperparameters)
    if config.algo == "dqn":
        return MaskedDQN(HoleDQNPolicy, venv, seed=seed, tensorboard_log=tensorboard_log, verbose=0, **kwargs)
    return MaskablePPO(HoleMaskablePolicy, venv, seed=seed, tensorboard_log=tensorboard_log, verbose=0, **kwargs)


CHECKPOINT = "model_{steps}_steps.zip"
REPLAY_BUFFER = "model_replay_buffer_{steps}_steps.pkl"


def _checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """This run's checkpoints (``model_N_steps.zip``), newest first."""
    found = []
    for path in directory.glob("model_*_steps.zip"):
        try:
            found.append((int(path.stem.split("_")[1]), path))
        except (IndexError, ValueError):
            continue
    return sorted(found, reverse=True)


class AtomicCheckpoint(BaseCallback):
    """Every ``freq`` calls: the SB3 model (and, for DQN, its replay buffer) written atomically into
    ``directory``; only the newest ``keep`` checkpoints and replay buffers are kept (a buffer is ~1 GB on large
    grids). Files of other names are never touched."""

    def __init__(self, directory: Path, freq: int, replay_buffer: bool, keep: int = 2) -> None:
        super().__init__()
        if keep < 1:
            raise ValueError(f"keep_checkpoints must be at least 1, not {keep}")
        self.directory, self.freq, self.replay_buffer, self.keep = directory, freq, replay_buffer, keep

    def _on_step(self) -> bool:
        if self.n_calls % self.freq == 0:
            save_checkpoint(self.model, self.directory, self.replay_buffer, self.keep)
        return True


def save_checkpoint(model, directory: Path, replay_buffer: bool, keep: int = 2) -> Path:
    """Write ``model_N_steps.zip`` (and the replay buffer) atomically; prune all but the newest ``keep``."""
    directory.mkdir(parents=True, exist_ok=True)
    steps = int(model.num_timesteps)
    path = directory / CHECKPOINT.format(steps=steps)
    if replay_buffer:
        with atomic_path(directory / REPLAY_BUFFER.format(steps=steps)) as tmp, open(tmp, "wb") as handle:
            model.save_replay_buffer(handle)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:       # last: a checkpoint implies its buffer
        model.save(handle)
    for old_steps, old in _checkpoints(directory)[keep:]:
        old.unlink(missing_ok=True)
        (directory / REPLAY_BUFFER.format(steps=old_steps)).unlink(missing_ok=True)
    return path


def _resume(cls, directory: Path, venv, tensorboard_log: str, replay_buffer: bool, log=print):
    """The newest checkpoint that loads, falling back to older ones; a checkpoint that does not load is renamed
    ``….zip.unreadable`` (kept, and no longer counted or pruned). None when the run has no checkpoint; an error
    when it has some and none loads (another algorithm's run folder, another SB3 version): never a silent restart.

    SB3 checkpoints unpickle Python objects: resume only run folders you made yourself."""
    found = _checkpoints(directory)
    for steps, path in found:
        try:
            model = cls.load(path, env=venv, tensorboard_log=tensorboard_log)
        except Exception as error:  # a truncated or corrupt zip: fall back to the previous checkpoint
            log(f"cannot resume from {path} ({type(error).__name__}: {error}); trying the previous checkpoint")
            path.rename(path.with_name(path.name + ".unreadable"))
            continue
        buffer = directory / REPLAY_BUFFER.format(steps=steps)
        if replay_buffer and buffer.exists():
            model.load_replay_buffer(buffer)
        log(f"resuming from {path} ({steps} steps)")
        return model
    if found:
        raise RuntimeError(f"none of the {len(found)} checkpoints in {directory} loads as a {cls.__name__} model "
                           "(see the messages above); start a new --run-dir rather than overwrite this run")
    return None


class EvalGoodExposures(BaseCallback):
    """Every ``eval.freq`` calls (and before the first): the greedy policy's mean good exposures on the held-out
    grids, beside the planner's, appended to ``eval.csv``; the best policy is saved in ``run_dir/best``."""

    def __init__(self, config: TrainingConfig, run_dir: Path, atlases: list[Atlas], name: str, log=print,
                 progress: bool = False) -> None:
        super().__init__()
        self.config, self.run_dir, self.atlases, self.name, self.log = config, run_dir, atlases, name, log
        self.progress = progress                     # a bar for the evaluation before RL (SB3's bar comes after)
        self.history_path = run_dir / "eval.csv"
        self.best = -np.inf
        self.planner_good = float("nan")
        self.started = time.time()
        if self.history_path.exists():
            previous = pd.read_csv(self.history_path)
            self.best = float(previous["good_mean"].max()) if len(previous) else -np.inf

    def truncate(self, steps: int) -> None:
        """Drop the rows after ``steps`` (a run resumed from that checkpoint evaluates those steps again)."""
        if not self.history_path.exists():
            return
        history = pd.read_csv(self.history_path)
        kept = history[history["timesteps"] <= steps]
        if len(kept) < len(history):
            with atomic_path(self.history_path) as tmp:
                kept.to_csv(tmp, index=False)
        self.best = float(kept["good_mean"].max()) if len(kept) else -np.inf

    def _mean_good(self, policy, progress: bool = False) -> float:
        settings, env = self.config.eval, self.config.env
        goods = [summarize(evaluate_policy(policy, atlas, episodes=settings.episodes, seed=10_000,
                                           budgets=[settings.budget], costs=env.costs, threshold=env.threshold,
                                           progress=progress))
                 ["good_mean"].iloc[0] for atlas in self.atlases]
        return float(np.mean(goods))

    def _on_training_start(self) -> None:
        if self.atlases:
            from cryorl.agents.planner import PlannerPolicy

            self.planner_good = self._mean_good(PlannerPolicy(), self.progress)
            if not self.history_path.exists():
                self._evaluate(self.progress)

    def _on_step(self) -> bool:
        if self.atlases and self.n_calls % self.config.eval.freq == 0:
            self._evaluate()
        return True

    def _evaluate(self, progress: bool = False) -> None:
        policy = LearnedPolicy.from_model(self.model, self.name)
        good = self._mean_good(policy, progress)
        self.logger.record("eval/good_exposures", good)
        self.logger.record("eval/good_vs_planner", good / max(self.planner_good, 1e-9))
        row = pd.DataFrame([{"timesteps": self.num_timesteps, "good_mean": good,
                             "planner_good_mean": self.planner_good, "wall_seconds": time.time() - self.started}])
        history = pd.concat([pd.read_csv(self.history_path), row]) if self.history_path.exists() else row
        with atomic_path(self.history_path) as tmp:
            history.to_csv(tmp, index=False)
        if good > self.best:
            self.best = good
            policy.metadata = {"algo": self.config.algo, "timesteps": int(self.num_timesteps),
                               "eval_good_mean": good, "eval_planner_good_mean": self.planner_good}
            _save_policy(policy, self.run_dir / "best")
        self.log(f"[{self.num_timesteps} steps] held-out good exposures {good:.1f} (best {self.best:.1f}; "
                 f"planner {self.planner_good:.1f})")


IMITATION_FLOOR = 300
"""Labelled steps per imitation round at least, when the rounds are scaled down to a short run."""


def imitation_for_run(config: TrainingConfig, timesteps: int | None = None,
                      imitation_steps: int | None = None) -> tuple[ImitationSettings | None, str]:
    """The imitation a new run does, and the line that says so: ``imitation_steps`` labelled steps in all, split
    over the config's rounds (0: none; without an ``imitation`` section, the default rounds); else the config's,
    with ``steps_per_round`` scaled by ``timesteps / n_timesteps`` (at least :data:`IMITATION_FLOOR`) when
    ``timesteps`` is below the config's ``n_timesteps``. Rounds collect whole episodes, so a round may take a
    few hundred steps more."""
    settings = config.imitation
    if imitation_steps is not None:
        if isinstance(imitation_steps, bool) or not isinstance(imitation_steps, (int, np.integer)) \
                or imitation_steps < 0:
            raise ValueError(f"imitation steps must be a whole number, 0 or more, not {imitation_steps!r}")
        if imitation_steps == 0:
            return None, "imitation: none (0 imitation steps asked)"
        settings = settings or ImitationSettings()
        settings = replace(settings, steps_per_round=-(-int(imitation_steps) // settings.rounds))
        why = f"{int(imitation_steps):,} imitation steps asked"
    elif settings is None:
        return None, "imitation: none (the config has no imitation section)"
    elif timesteps is not None and timesteps < config.n_timesteps:
        scaled = round(settings.steps_per_round * timesteps / config.n_timesteps)
        settings = replace(settings, steps_per_round=min(settings.steps_per_round, max(IMITATION_FLOOR, scaled)))
        why = (f"scaled to --timesteps {timesteps:,} of the config's {config.n_timesteps:,}, at least "
               f"{IMITATION_FLOOR} a round; --imitation-steps N to choose")
    else:
        why = "the config's"
    return settings, (f"imitation: {settings.rounds} rounds × {settings.steps_per_round:,} labelled steps, whole "
                      f"episodes, {settings.epochs:g} fitting epochs each ({why})")


def rl_steps(model, remaining: int) -> tuple[int, str]:
    """``remaining`` RL steps rounded up to what the algorithm learns in — whole PPO rollouts (``n_steps`` × the
    environments), DQN's collections of ``train_freq`` steps × the environments — so that the run stops where it
    says and SB3's progress bar ends at its total; and the line that says so."""
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
    from stable_baselines3.common.type_aliases import TrainFrequencyUnit

    algo = type(model).__name__
    if remaining <= 0:
        return 0, f"rl: none (the model has {model.num_timesteps:,} steps, as many as asked)"
    unit, what = model.n_envs, f"{model.n_envs} environment(s)"
    if isinstance(model, OnPolicyAlgorithm):
        unit = model.n_steps * model.n_envs
        what = f"whole rollouts of n_steps {model.n_steps:,} × {model.n_envs} environment(s)"
    elif getattr(model, "train_freq", None) is not None and model.train_freq.unit == TrainFrequencyUnit.STEP:
        unit = model.train_freq.frequency * model.n_envs
        what = f"collections of train_freq {model.train_freq.frequency} steps × {model.n_envs} environment(s)"
    steps = -(-int(remaining) // unit) * unit
    line = f"rl: {steps:,} {algo} steps"
    return steps, line + (f" ({remaining:,} rounded up to {what})" if steps != remaining else "")


def _imitate(model, config: TrainingConfig, settings: ImitationSettings, fns: list, run_dir: Path, seed: int,
             log, progress: bool) -> None:
    """DAgger from the planner into the model's network (:mod:`cryorl.agents.imitation`) before RL; the rounds'
    agreement and losses go to ``imitation.csv``."""
    from cryorl.agents.imitation import imitate

    envs = [fn() for fn in fns]
    started = time.time()
    history = imitate(scorer_from_model(model), envs, loss="q" if config.algo == "dqn" else "policy",
                      gamma=config.gamma, seed=seed, log=log, progress=progress, **asdict(settings))
    if config.algo == "dqn":
        model.policy.q_net_target.load_state_dict(model.policy.q_net.state_dict())
    frame = pd.DataFrame(history).assign(wall_seconds=round(time.time() - started, 1))
    with atomic_path(run_dir / "imitation.csv") as tmp:
        frame.to_csv(tmp, index=False)


def _save_policy(policy: LearnedPolicy, folder: Path) -> None:
    """``best/`` and ``policy/`` change as one unit (weights and config together): a fresh folder swapped in."""
    from cryorl.outputs import output_folder

    with output_folder(folder, overwrite=True, what="policy") as tmp:
        policy.save(tmp)


def train(config: TrainingConfig | dict[str, Any], run_dir: str | os.PathLike, *, seed: int = 0,
          timesteps: int | None = None, imitation_steps: int | None = None, progress_bar: bool = True,
          name: str | None = None, log=print) -> LearnedPolicy:
    """Train (or resume) one agent in ``run_dir``; returns the final policy (also saved in ``run_dir/policy``).

    ``config``: a :class:`~cryorl.agents.config.TrainingConfig` (or its mapping, checked here). With an
    ``imitation`` section (or ``imitation_steps`` > 0), a new run first imitates the planner (DAgger;
    ``imitation.csv``) and then learns by RL from there; ``timesteps`` below the config's ``n_timesteps`` scales
    the imitation down with it, ``imitation_steps`` sets it (labelled steps in all; 0: none) —
    :func:`imitation_for_run`. RL steps are rounded up to whole PPO rollouts (:func:`rl_steps`). Each phase
    says in one ``log`` line what it will do, and shows a progress bar with ``progress_bar``.

    ``run_dir`` gets ``checkpoints/`` (SB3 zips, with the replay buffer for DQN; written atomically, the newest
    ``keep_checkpoints`` kept), ``tb/`` (TensorBoard), ``eval.csv`` and ``best/`` (the best policy on
    the held-out grids), ``policy/`` and ``run.json`` (config, seed, wall time). Re-running with the same
    ``run_dir`` resumes from the newest checkpoint that loads. Checkpoints are SB3 zips, which unpickle Python
    objects: a run folder is trusted like code; resume only runs you made (shipped policies are plain weights).

    One run at a time: ``run_dir/.cryorl.lock`` refuses a second (an unwritable ``run_dir`` is refused there,
    before any work). A resumed run first removes the temporary ``.part`` files a killed run left (a replay
    buffer can be ~1 GB) and the ``eval.csv`` rows after its checkpoint, which it evaluates again.
    """
    from cryorl.outputs import lock_folder

    config = TrainingConfig.from_mapping(config)
    imitation_for_run(config, timesteps, imitation_steps)            # a bad imitation_steps, before any work
    run_dir = Path(run_dir)
    with lock_folder(run_dir, what="run folder"):
        for folder in (run_dir, run_dir / "checkpoints"):
            removed = remove_orphaned_parts(folder, untagged=True)       # we hold the lock: no writer is alive
            if removed:
                log(f"removed {len(removed)} temporary files of an interrupted run from {folder}")
        return _train(config, run_dir, seed=seed, timesteps=timesteps, imitation_steps=imitation_steps,
                      progress_bar=progress_bar, name=name, log=log)


def eval_for_run(config: TrainingConfig, timesteps: int) -> tuple[TrainingConfig, str]:
    """The config with its held-out evaluation scaled to a run shorter than ``n_timesteps`` (as the imitation is):
    the first simulated grid only, ``episodes`` scaled by ``timesteps / n_timesteps`` (at least 2); and the words
    that say so ("" for a full run)."""
    settings = config.eval
    if timesteps >= config.n_timesteps or (len(settings.grid_seeds) <= 1 and settings.episodes <= 2):
        return config, ""
    episodes = max(2, min(settings.episodes, -(-settings.episodes * timesteps // config.n_timesteps)))
    scaled = replace(settings, grid_seeds=tuple(settings.grid_seeds[:1]), episodes=episodes)
    return replace(config, eval=scaled), f" (scaled to --timesteps {timesteps:,} of the config's " \
                                         f"{config.n_timesteps:,})"


def _train(config: TrainingConfig, run_dir: Path, *, seed: int, timesteps: int | None,
           imitation_steps: int | None, progress_bar: bool, name: str | None, log) -> LearnedPolicy:
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.utils import set_random_seed

    from cryorl.agents.sb3 import MaskedDQN

    name = name or config.algo
    total = int(timesteps if timesteps is not None else config.n_timesteps)
    set_random_seed(seed)
    fns = training_env_fns(config.env)                               # real sources are loaded here, once
    venv = make_training_env(config.env, seed, fns)
    config, eval_note = eval_for_run(config, total)
    eval_atlases = make_eval_atlases(config.eval)
    cls = MaskedDQN if config.algo == "dqn" else MaskablePPO
    model = _resume(cls, run_dir / "checkpoints", venv, str(run_dir / "tb"), config.algo == "dqn", log)
    resume = model is not None
    if model is None:
        model = _make_model(config, venv, seed, str(run_dir / "tb"))
        imitation, line = imitation_for_run(config, timesteps, imitation_steps)
        log(line)
        if imitation is not None:
            _imitate(model, config, imitation, fns, run_dir, seed, log, progress_bar)
            save_checkpoint(model, run_dir / "checkpoints", replay_buffer=False, keep=config.keep_checkpoints)
        config = replace(config, imitation=imitation)                    # run.json records the imitation done
    remaining, rl_line = rl_steps(model, total - model.num_timesteps)
    if remaining and eval_atlases:
        log(f"evaluation: {name} and the planner on {len(eval_atlases)} held-out grid(s), {config.eval.episodes} "
            f"episodes at {config.eval.budget:g} min, before RL and every {config.eval.freq:,} steps of each "
            f"environment{eval_note}")
    log(rl_line)
    started = time.time()
    evaluation = EvalGoodExposures(config, run_dir, eval_atlases, name, log, progress=progress_bar)
    evaluation.truncate(int(model.num_timesteps))            # rows of steps this run will evaluate again
    if remaining:
        callbacks = [AtomicCheckpoint(run_dir / "checkpoints", config.checkpoint_freq,
                                      replay_buffer=config.algo == "dqn", keep=config.keep_checkpoints),
                     evaluation]
        with warnings.catch_warnings():                  # SB3's bar is tqdm.rich, which warns it is experimental
            warnings.filterwarnings("ignore", message="rich is experimental")
            model.learn(remaining, callback=callbacks, reset_num_timesteps=not resume, progress_bar=progress_bar,
                        tb_log_name=name)
    wall = time.time() - started
    with atomic_path(run_dir / "final.zip") as tmp, open(tmp, "wb") as handle:
        model.save(handle)
    metadata = {"algo": config.algo, "timesteps": int(model.num_timesteps), "seed": seed,
                "wall_seconds_this_run": round(wall, 1), "torch_threads": torch.get_num_threads()}
    policy = LearnedPolicy.from_model(model, name, metadata)
    _save_policy(policy, run_dir / "policy")
    record = {"config": config.to_mapping(), **metadata}
    atomic_write_text(run_dir / "run.json", json.dumps(record, indent=2, default=str) + "\n")
    return policy


def train_agent(algo: str = "dqn", config: str | os.PathLike | None = None, run_dir: str | os.PathLike | None = None,
                *, seed: int = 0, timesteps: int | None = None, imitation_steps: int | None = None,
                threads: int = 2, progress: bool = True) -> tuple[LearnedPolicy, Path]:
    """``cryorl train``: :func:`train` with the hyper-parameter YAML ``config`` (default: the shipped
    ``hyperparams/ALGO.yml``) into ``run_dir`` (default ``runs/ALGO-seedN``; an interrupted run there resumes);
    returns the trained policy and the run folder."""
    from cryorl.resources import HYPERPARAMS_DIR

    for option, value in (("--timesteps", timesteps), ("--imitation-steps", imitation_steps)):
        if value is not None and value < 0:
            raise ValueError(f"{option} must be 0 or more, not {value}")
    torch.set_num_threads(threads)
    loaded = load_config(config or HYPERPARAMS_DIR / f"{algo}.yml")
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / f"{loaded.algo}-seed{seed}"
    policy = train(loaded, run_dir, seed=seed, timesteps=timesteps, imitation_steps=imitation_steps,
                   progress_bar=progress)
    return policy, run_dir
