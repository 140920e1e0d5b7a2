"""Training learned agents with Stable-Baselines3: environments from a config, evaluation with the domain metric
(good exposures within the budget), checkpoints that resume, and the trained policy saved as plain weights.

The config (``agents/hyperparams/*.yml``) is cryorl's own format, laid out like rl-zoo3's (one section per
environment id, SB3 hyper-parameters at its top level) but with keys rl-zoo3 does not know: ``algo``,
``n_timesteps``, ``env`` (training grids), ``eval`` (held-out grids), ``checkpoint_freq`` and ``keep_checkpoints``.
``cryorl train`` reads it; rl-zoo3 cannot.
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
from cryorl.agents.learned import LearnedPolicy
from cryorl.atlas import Atlas
from cryorl.env import CryoEMEnv
from cryorl.fileio import atomic_path, atomic_write_text
from cryorl.synth import GridSpec, simulate_atlas

__all__ = ["RandomBudget", "OpportunityCost", "load_config", "make_training_env", "make_eval_atlases", "train", "real_part"]

ALGOS = ("dqn", "ppo")
NON_SB3_KEYS = {"algo", "n_timesteps", "env", "eval", "checkpoint_freq", "keep_checkpoints", "policy"}


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


def _source_env(source: dict[str, Any], env_settings: dict[str, Any], max_holes: int) -> CryoEMEnv:
    common = {k: env_settings[k] for k in ("costs", "threshold") if k in env_settings}
    budget = max(env_settings.get("budgets", [480]))
    if "data" in source:
        return CryoEMEnv(real_part(source["data"]), max_holes=max_holes, budget=budget, **common)
    return CryoEMEnv(grid=source.get("grid", {}), resample_grid=True, max_holes=max_holes, budget=budget, **common)


def _source_size(source: dict[str, Any]) -> int:
    if "data" in source:
        return len(real_part(source["data"]))
    return GridSpec.from_mapping(source.get("grid", {})).n_holes


def make_training_env(env_settings: dict[str, Any], seed: int):
    """A DummyVecEnv with one copy per training source (simulated grids resampled every episode, or real parts),
    padded to a common ``max_holes``."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    sources = env_settings.get("sources") or [{"grid": {}}]
    max_holes = max(_source_size(s) for s in sources)
    budgets = env_settings.get("budgets", [480])
    per_minute = float(env_settings.get("opportunity_cost", 0.0))

    def build(source):
        env = RandomBudget(_source_env(source, env_settings, max_holes), budgets)
        return Monitor(OpportunityCost(env, per_minute) if per_minute else env)

    def factory(source):
        return lambda: build(source)

    venv = DummyVecEnv([factory(s) for s in sources])
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
        """Every ``eval.freq`` steps: the greedy policy's mean good exposures on the held-out grids; keeps the best."""

        def __init__(self) -> None:
            super().__init__()
            self.freq = int(eval_settings.get("freq", 10000))
            self.history_path = run_dir / "eval.csv"
            self.best = -np.inf
            if self.history_path.exists():
                previous = pd.read_csv(self.history_path)
                self.best = float(previous["good_mean"].max()) if len(previous) else -np.inf

        def _on_step(self) -> bool:
            if not eval_atlases or self.n_calls % self.freq != 0:
                return True
            policy = LearnedPolicy.from_model(self.model, name)
            goods = []
            for atlas in eval_atlases:
                trajectories = evaluate_policy(policy, atlas, episodes=int(eval_settings.get("episodes", 5)),
                                               seed=10_000, budgets=[float(eval_settings.get("budget", 480))],
                                               **{k: config["env"][k] for k in ("costs", "threshold")
                                                  if k in config["env"]})
                goods.append(summarize(trajectories)["good_mean"].iloc[0])
            good = float(np.mean(goods))
            self.logger.record("eval/good_exposures", good)
            row = pd.DataFrame([{"timesteps": self.num_timesteps, "good_mean": good,
                                 "wall_seconds": time.time() - start_time}])
            history = pd.concat([pd.read_csv(self.history_path), row]) if self.history_path.exists() else row
            with atomic_path(self.history_path) as tmp:
                history.to_csv(tmp, index=False)
            if good > self.best:
                self.best = good
                policy.metadata = {"algo": algo, "timesteps": int(self.num_timesteps), "eval_good_mean": good}
                policy.save(run_dir / "best")
            log(f"[{self.num_timesteps} steps] held-out good exposures {good:.1f} (best {self.best:.1f})")
            return True

    start_time = time.time()
    checkpoint = AtomicCheckpoint(run_dir / "checkpoints", int(config.get("checkpoint_freq", 10000)),
                                  replay_buffer=algo == "dqn", keep=int(config.get("keep_checkpoints", 2)))
    return [checkpoint, EvalGoodExposures()]


def train(config: dict[str, Any], run_dir: str | os.PathLike, *, seed: int = 0, timesteps: int | None = None,
          progress_bar: bool = True, name: str | None = None, log=print) -> LearnedPolicy:
    """Train (or resume) one agent in ``run_dir``; returns the final policy (also saved in ``run_dir/policy``).

    ``run_dir`` gets ``checkpoints/`` (SB3 zips, with the replay buffer for DQN; written atomically, the newest
    ``keep_checkpoints`` (2) kept), ``tb/`` (TensorBoard), ``eval.csv`` and ``best/`` (the best policy on the
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
