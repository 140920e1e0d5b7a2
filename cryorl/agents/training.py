"""Training learned agents with Stable-Baselines3: environments from a config, evaluation with the domain metric
(good exposures within the budget), checkpoints that resume, and the trained policy saved as plain weights.

The config (``agents/hyperparams/*.yml``) is cryorl's own format, laid out like rl-zoo3's (one section per
environment id, SB3 hyper-parameters at its top level) but with keys rl-zoo3 does not know: ``algo``,
``n_timesteps``, ``env`` (training grids), ``eval`` (held-out grids), ``imitation`` (DAgger from the planner before
RL, :mod:`cryorl.agents.imitation`), ``checkpoint_freq`` and ``keep_checkpoints``. ``cryorl train`` reads it;
rl-zoo3 cannot.

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
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from stable_baselines3.common.callbacks import BaseCallback

from cryorl.agents.evaluation import evaluate_policy, summarize
from cryorl.agents.learned import LearnedPolicy, scorer_from_model
from cryorl.agents.signals import PlannerSignals
from cryorl.atlas import Atlas
from cryorl.env import CryoEMEnv
from cryorl.fileio import atomic_path, atomic_write_text
from cryorl.quality import as_classifier
from cryorl.synth import GridSpec, simulate_atlas

__all__ = ["RandomBudget", "OpportunityCost", "load_config", "training_env_fns", "make_training_env",
           "make_eval_atlases", "train", "real_part"]

ALGOS = ("dqn", "ppo")
NON_SB3_KEYS = {"algo", "n_timesteps", "env", "eval", "checkpoint_freq", "keep_checkpoints", "policy", "imitation"}


class RandomBudget(gym.Wrapper):
    """Draws each episode's budget (minutes) from ``budgets``, so one policy learns every budget."""

    def __init__(self, env: gym.Env, budgets: list[float]) -> None:
        super().__init__(env)
        self.budgets = [float(b) for b in budgets]

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            super().reset(seed=seed)
        budget = self.budgets[int(self.unwrapped.np_random.integers(len(self.budgets)))]
        return self.env.reset(options={**(options or {}), "budget": budget})


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

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._elapsed = info["elapsed"]
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        minutes = info["elapsed"] - self._elapsed
        self._elapsed = info["elapsed"]
        return obs, reward - self.per_minute * minutes, terminated, truncated, info


def load_config(path: str | os.PathLike, env_id: str = "CryoEM-v0") -> dict[str, Any]:
    import yaml

    path = Path(path)
    with open(path) as handle:
        document = yaml.safe_load(handle)
    if not isinstance(document, dict) or env_id not in document:
        raise ValueError(f"{path}: expected a mapping with a {env_id!r} section (one section per environment id)")
    config = document[env_id]
    if config.get("algo") not in ALGOS:
        raise ValueError(f"{path}: 'algo' must be one of {ALGOS}, not {config.get('algo')!r}")
    return config


def real_part(data: dict[str, Any]) -> Atlas:
    """A real split, optionally restricted to some atlas tiles (``tiles``: indices in the split's tile order)."""
    from cryorl.loaders import load_cryorl_dataset

    atlas = load_cryorl_dataset(Path(data["dir"]).expanduser(), data.get("split", "train"))
    if "tiles" in data:
        tiles = [int(t) for t in data["tiles"]]
        atlas = atlas.subset(np.isin(atlas.tile, tiles), source=f"{atlas.source} tiles {tiles}")
    return atlas


class _ClassifierGridEnv(CryoEMEnv):
    """A simulated environment whose grids carry a classifier's probabilities instead of predicted CTFMaxRes."""

    def _simulate(self, seed) -> Atlas:
        return as_classifier(super()._simulate(seed))


def _source_env(source: dict[str, Any], env_settings: dict[str, Any], max_holes: int) -> CryoEMEnv:
    common = {k: env_settings[k] for k in ("costs", "threshold") if k in env_settings}
    if "costs" in source:                                            # a source may train another setting's costs
        common["costs"] = source["costs"]
    budget = max(env_settings.get("budgets", [480]))
    predictions = source.get("predictions", "regressor")
    if predictions not in ("regressor", "classifier"):
        raise ValueError(f"a training source's predictions are 'regressor' or 'classifier', not {predictions!r}")
    if "data" in source:
        atlas = real_part(source["data"])
        return CryoEMEnv(as_classifier(atlas) if predictions == "classifier" and atlas.has_ctf_predictions
                         else atlas, max_holes=max_holes, budget=budget, **common)
    cls = _ClassifierGridEnv if predictions == "classifier" else CryoEMEnv
    return cls(grid=source.get("grid", {}), resample_grid=True, max_holes=max_holes, budget=budget, **common)


def _source_size(source: dict[str, Any]) -> int:
    if "data" in source:
        return len(real_part(source["data"]))
    return GridSpec.from_mapping(source.get("grid", {})).n_holes


def training_env_fns(env_settings: dict[str, Any]) -> list:
    """One environment factory per training source (simulated grids redrawn every episode, or real parts), padded
    to a common ``max_holes``: budgets drawn per episode, the opportunity cost, the planner's signals."""
    sources = env_settings.get("sources") or [{"grid": {}}]
    max_holes = max(_source_size(s) for s in sources)
    budgets = env_settings.get("budgets", [480])
    per_minute = float(env_settings.get("opportunity_cost", 0.0))

    def factory(source):
        def build():
            env = RandomBudget(_source_env(source, env_settings, max_holes), budgets)
            return PlannerSignals(OpportunityCost(env, per_minute) if per_minute else env)
        return build

    return [factory(s) for s in sources]


def make_training_env(env_settings: dict[str, Any], seed: int):
    """The vectorized training environment: one copy per source (:func:`training_env_fns`), each in a
    ``Monitor``; in subprocesses with ``vec_env: subproc``."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    kind = env_settings.get("vec_env", "dummy")
    if kind not in ("dummy", "subproc"):
        raise ValueError(f"env.vec_env is 'dummy' or 'subproc', not {kind!r}")
    fns = [lambda fn=fn: Monitor(fn()) for fn in training_env_fns(env_settings)]
    venv = SubprocVecEnv(fns) if kind == "subproc" else DummyVecEnv(fns)
    venv.seed(seed)
    return venv


def make_eval_atlases(eval_settings: dict[str, Any]) -> list[Atlas]:
    """Held-out grids: simulated (``grid`` + ``grid_seeds``) and/or real parts (``data``)."""
    atlases = [simulate_atlas(int(s), GridSpec.from_mapping(eval_settings.get("grid", {})))
               for s in eval_settings.get("grid_seeds", [])]
    if "data" in eval_settings:
        atlases.append(real_part(eval_settings["data"]))
    return atlases


def _make_model(config: dict[str, Any], venv, seed: int, tensorboard_log: str | None):
    from sb3_contrib import MaskablePPO

    from cryorl.agents.sb3 import HoleDQNPolicy, HoleMaskablePolicy, MaskedDQN

    kwargs = {k: copy.deepcopy(v) for k, v in config.items() if k not in NON_SB3_KEYS}
    if config["algo"] == "dqn":
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


def _callbacks(config, run_dir: Path, eval_atlases: list[Atlas], name: str, log=print):
    eval_settings = config.get("eval", {})
    algo = config["algo"]

    class EvalGoodExposures(BaseCallback):
        """Every ``eval.freq`` steps (and before the first): the greedy policy's mean good exposures on the
        held-out grids, beside the planner's; keeps the best policy."""

        def __init__(self) -> None:
            super().__init__()
            self.freq = int(eval_settings.get("freq", 10000))
            self.history_path = run_dir / "eval.csv"
            self.best = -np.inf
            self.planner_good = None
            if self.history_path.exists():
                previous = pd.read_csv(self.history_path)
                self.best = float(previous["good_mean"].max()) if len(previous) else -np.inf

        def _mean_good(self, policy) -> float:
            goods = []
            for atlas in eval_atlases:
                trajectories = evaluate_policy(policy, atlas, episodes=int(eval_settings.get("episodes", 5)),
                                               seed=10_000, budgets=[float(eval_settings.get("budget", 480))],
                                               **{k: config["env"][k] for k in ("costs", "threshold")
                                                  if k in config["env"]})
                goods.append(summarize(trajectories)["good_mean"].iloc[0])
            return float(np.mean(goods))

        def _on_training_start(self) -> None:
            if eval_atlases:
                from cryorl.agents.planner import PlannerPolicy

                self.planner_good = self._mean_good(PlannerPolicy())
                if not self.history_path.exists():
                    self._evaluate()

        def _on_step(self) -> bool:
            if eval_atlases and self.n_calls % self.freq == 0:
                self._evaluate()
            return True

        def _evaluate(self) -> None:
            policy = LearnedPolicy.from_model(self.model, name)
            good = self._mean_good(policy)
            self.logger.record("eval/good_exposures", good)
            self.logger.record("eval/good_vs_planner", good / max(self.planner_good, 1e-9))
            row = pd.DataFrame([{"timesteps": self.num_timesteps, "good_mean": good,
                                 "planner_good_mean": self.planner_good,
                                 "wall_seconds": time.time() - start_time}])
            history = pd.concat([pd.read_csv(self.history_path), row]) if self.history_path.exists() else row
            with atomic_path(self.history_path) as tmp:
                history.to_csv(tmp, index=False)
            if good > self.best:
                self.best = good
                policy.metadata = {"algo": algo, "timesteps": int(self.num_timesteps), "eval_good_mean": good,
                                   "eval_planner_good_mean": self.planner_good}
                policy.save(run_dir / "best")
            log(f"[{self.num_timesteps} steps] held-out good exposures {good:.1f} (best {self.best:.1f}; "
                f"planner {self.planner_good:.1f})")

    start_time = time.time()
    checkpoint = AtomicCheckpoint(run_dir / "checkpoints", int(config.get("checkpoint_freq", 10000)),
                                  replay_buffer=algo == "dqn", keep=int(config.get("keep_checkpoints", 2)))
    return [checkpoint, EvalGoodExposures()]


IMITATION_KEYS = {"rounds", "steps_per_round", "follow_planner", "epochs", "batch_size", "learning_rate", "margin",
                  "value_weight"}


def _imitate(model, config: dict[str, Any], run_dir: Path, seed: int, log) -> None:
    """DAgger from the planner into the model's network (:mod:`cryorl.agents.imitation`) before RL; the rounds'
    agreement and losses go to ``imitation.csv``."""
    from cryorl.agents.imitation import imitate

    settings = dict(config["imitation"])
    unknown = set(settings) - IMITATION_KEYS
    if unknown:
        raise ValueError(f"unknown imitation settings {sorted(unknown)}; known: {sorted(IMITATION_KEYS)}")
    envs = [fn() for fn in training_env_fns(config.get("env", {}))]
    scorer = scorer_from_model(model)
    started = time.time()
    history = imitate(scorer, envs, loss="q" if config["algo"] == "dqn" else "policy",
                      gamma=float(config.get("gamma", 0.99)), seed=seed, log=log, **settings)
    if config["algo"] == "dqn":
        model.policy.q_net_target.load_state_dict(model.policy.q_net.state_dict())
    frame = pd.DataFrame(history).assign(wall_seconds=round(time.time() - started, 1))
    with atomic_path(run_dir / "imitation.csv") as tmp:
        frame.to_csv(tmp, index=False)


def train(config: dict[str, Any], run_dir: str | os.PathLike, *, seed: int = 0, timesteps: int | None = None,
          progress_bar: bool = True, name: str | None = None, log=print) -> LearnedPolicy:
    """Train (or resume) one agent in ``run_dir``; returns the final policy (also saved in ``run_dir/policy``).

    With an ``imitation`` section, a new run first imitates the planner (DAgger; ``imitation.csv``) and then
    learns by RL from there. ``run_dir`` gets ``checkpoints/`` (SB3 zips, with the replay buffer for DQN; written
    atomically, the newest ``keep_checkpoints`` (2) kept), ``tb/`` (TensorBoard), ``eval.csv`` and ``best/`` (the best
    policy on the
    held-out grids), ``policy/`` and ``run.json`` (config, seed, wall time). Re-running with the same ``run_dir``
    resumes from the newest checkpoint that loads. Checkpoints are SB3 zips, which unpickle Python objects: a run
    folder is trusted like code; resume only runs you made (shipped policies are plain weights instead).
    """
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.utils import set_random_seed

    from cryorl.agents.sb3 import MaskedDQN

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    name = name or config["algo"]
    total = int(timesteps if timesteps is not None else config["n_timesteps"])
    set_random_seed(seed)
    venv = make_training_env(config.get("env", {}), seed)
    eval_atlases = make_eval_atlases(config.get("eval", {}))
    cls = MaskedDQN if config["algo"] == "dqn" else MaskablePPO
    model = _resume(cls, run_dir / "checkpoints", venv, str(run_dir / "tb"), config["algo"] == "dqn", log)
    resume = model is not None
    if model is None:
        model = _make_model(config, venv, seed, str(run_dir / "tb"))
        if config.get("imitation"):
            _imitate(model, config, run_dir, seed, log)
            save_checkpoint(model, run_dir / "checkpoints", replay_buffer=False,
                            keep=int(config.get("keep_checkpoints", 2)))
    remaining = max(total - model.num_timesteps, 0)
    started = time.time()
    if remaining:
        model.learn(remaining, callback=_callbacks(config, run_dir, eval_atlases, name, log),
                    reset_num_timesteps=not resume, progress_bar=progress_bar, tb_log_name=name)
    wall = time.time() - started
    with atomic_path(run_dir / "final.zip") as tmp, open(tmp, "wb") as handle:
        model.save(handle)
    metadata = {"algo": config["algo"], "timesteps": int(model.num_timesteps), "seed": seed,
                "wall_seconds_this_run": round(wall, 1), "torch_threads": torch.get_num_threads()}
    policy = LearnedPolicy.from_model(model, name, metadata)
    policy.save(run_dir / "policy")
    atomic_write_text(run_dir / "run.json", json.dumps({"config": config, **metadata}, indent=2, default=str) + "\n")
    return policy
