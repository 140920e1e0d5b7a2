"""Training learned agents with Stable-Baselines3: environments from a config, evaluation with the domain metric
(good exposures within the budget), checkpoints that resume, and the trained policy saved as plain weights.

The config is an rl-zoo3-style mapping (see ``agents/hyperparams/*.yml``): SB3 hyper-parameters at the top level,
plus ``algo``, ``n_timesteps``, ``env`` (training grids), ``eval`` (held-out grids) and ``checkpoint_freq``.
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

from cryorl.agents.evaluation import evaluate_policy, summarize
from cryorl.agents.learned import LearnedPolicy
from cryorl.atlas import Atlas
from cryorl.env import CryoEMEnv
from cryorl.fileio import atomic_path, atomic_write_text
from cryorl.synth import GridSpec, simulate_atlas

__all__ = ["RandomBudget", "OpportunityCost", "load_config", "make_training_env", "make_eval_atlases", "train", "real_part"]

ALGOS = ("dqn", "ppo")
NON_SB3_KEYS = {"algo", "n_timesteps", "env", "eval", "checkpoint_freq", "policy"}


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
        raise ValueError(f"{path}: expected a mapping with a {env_id!r} section (rl-zoo3 layout)")
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
    return replace_spec(source.get("grid", {})).n_holes


def replace_spec(grid: dict[str, Any]) -> GridSpec:
    from dataclasses import replace

    return replace(GridSpec(), **grid)


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
    atlases = [simulate_atlas(int(s), replace_spec(eval_settings.get("grid", {})))
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


def _latest_checkpoint(directory: Path) -> tuple[Path, int] | None:
    found = []
    for path in directory.glob("model_*_steps.zip"):
        try:
            found.append((int(path.stem.split("_")[1]), path))
        except (IndexError, ValueError):
            continue
    if not found:
        return None
    steps, path = max(found)
    return path, steps


def _callbacks(config, run_dir: Path, eval_atlases: list[Atlas], name: str, log=print):
    from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback

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
    checkpoint = CheckpointCallback(save_freq=int(config.get("checkpoint_freq", 10000)),
                                    save_path=str(run_dir / "checkpoints"), name_prefix="model",
                                    save_replay_buffer=algo == "dqn")
    return [checkpoint, EvalGoodExposures()]


def train(config: dict[str, Any], run_dir: str | os.PathLike, *, seed: int = 0, timesteps: int | None = None,
          progress_bar: bool = True, name: str | None = None, log=print) -> LearnedPolicy:
    """Train (or resume) one agent in ``run_dir``; returns the final policy (also saved in ``run_dir/policy``).

    ``run_dir`` gets ``checkpoints/`` (SB3 zips, with the replay buffer for DQN), ``tb/`` (TensorBoard), ``eval.csv``
    and ``best/`` (the best policy on the held-out grids), ``policy/`` and ``run.json`` (config, seed, wall time).
    Re-running with the same ``run_dir`` resumes from the latest checkpoint.
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
    resume = _latest_checkpoint(run_dir / "checkpoints")
    if resume is not None:
        path, steps = resume
        cls = MaskedDQN if config["algo"] == "dqn" else MaskablePPO
        model = cls.load(path, env=venv, tensorboard_log=str(run_dir / "tb"))
        buffer = path.with_name(f"model_replay_buffer_{steps}_steps.pkl")
        if config["algo"] == "dqn" and buffer.exists():
            model.load_replay_buffer(buffer)
        log(f"resuming from {path} ({steps} steps)")
    else:
        model = _make_model(config, venv, seed, str(run_dir / "tb"))
    remaining = max(total - model.num_timesteps, 0)
    started = time.time()
    if remaining:
        model.learn(remaining, callback=_callbacks(config, run_dir, eval_atlases, name, log),
                    reset_num_timesteps=resume is None, progress_bar=progress_bar, tb_log_name=name)
    wall = time.time() - started
    with atomic_path(run_dir / "final.zip") as tmp:
        model.save(tmp)
    metadata = {"algo": config["algo"], "timesteps": int(model.num_timesteps), "seed": seed,
                "wall_seconds_this_run": round(wall, 1), "torch_threads": torch.get_num_threads()}
    policy = LearnedPolicy.from_model(model, name, metadata)
    policy.save(run_dir / "policy")
    atomic_write_text(run_dir / "run.json", json.dumps({"config": config, **metadata}, indent=2, default=str) + "\n")
    return policy
