"""``CryoEM-v0`` as a native Gymnasium vector environment: N grids stepped in one batch of numpy operations.

``gymnasium.make_vec("CryoEM-v0", num_envs=N, vectorization_mode="vector_entry_point", **kwargs)`` builds a
:class:`CryoEMVectorEnv`; it behaves exactly like ``make_vec(..., vectorization_mode="sync")`` of the same kwargs
(same grids, start holes, observations, rewards, ends and infos for the same seed and actions), only faster.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from cryorl.atlas import Atlas, clip_ctf
from cryorl.costs import SWITCH_LEVELS, switch_level
from cryorl.env import CryoEMEnv
from cryorl.observation import COMPACT_SCHEMA, MAX_MINUTES, ObservationKey, observation_space

__all__ = ["CryoEMVectorEnv", "unstepped_keys"]

_SWITCH_NAMES = np.array([*SWITCH_LEVELS, None], dtype=object)
"""Switch names by level, level -1 (no move: a reset or an invalid action) last, so ``_SWITCH_NAMES[-1]`` is None."""


_STEPPED = ("visited", "current", "action_mask", "measured_ctf", "time_left")
"""The compact keys :meth:`CryoEMVectorEnv.step` updates; every other key must stay fixed within an episode."""


def unstepped_keys(schema: tuple[ObservationKey, ...] = COMPACT_SCHEMA) -> list[str]:
    """Keys of ``schema`` that change within an episode but that the vector environment does not update."""
    return [key.name for key in schema if key.changes != "episode" and key.name not in _STEPPED]


def _checked_settings(num_envs, autoreset_mode, max_episode_steps, env_kwargs: dict) -> AutoresetMode:
    """The autoreset mode, after checking the vector environment's own arguments."""
    if isinstance(num_envs, (bool, np.bool_)) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, not {num_envs!r}")
    try:
        mode = AutoresetMode(autoreset_mode)
    except ValueError:
        raise ValueError(f"autoreset_mode must be one of {[m.value for m in AutoresetMode]}, "
                         f"not {autoreset_mode!r}") from None
    if max_episode_steps is not None and (isinstance(max_episode_steps, (bool, np.bool_))
                                          or not isinstance(max_episode_steps, (int, np.integer))
                                          or max_episode_steps < 1):
        raise ValueError(f"max_episode_steps must be a positive integer or None, not {max_episode_steps!r}")
    if env_kwargs.get("render_mode") is not None:
        raise ValueError(f"CryoEMVectorEnv does not render (render_mode={env_kwargs['render_mode']!r}); use "
                         "gymnasium.make_vec(..., vectorization_mode='sync') to render sub-environments")
    unstepped = unstepped_keys()
    if unstepped:
        raise NotImplementedError(f"CryoEMVectorEnv.step does not update observation key(s) {', '.join(unstepped)}, "
                                  "which change within an episode (cryorl/observation.py); add them to its _move")
    return mode


def _compact_envs(num_envs: int, env_kwargs: dict) -> list[CryoEMEnv]:
    """``num_envs`` sub-environments of the compact observation, all with the same hole rows."""
    envs = [CryoEMEnv(**env_kwargs) for _ in range(num_envs)]
    first = envs[0]
    if first.feature_set_name != "compact":
        raise ValueError(f"CryoEMVectorEnv batches the compact observation, not feature_set="
                         f"{first.feature_set_name!r}; use gymnasium.make_vec(..., vectorization_mode='sync')")
    for i, env in enumerate(envs[1:], start=1):
        if env.observation_space != first.observation_space:
            raise ValueError(f"sub-environment {i} has {env.max_holes} hole rows but sub-environment 0 has "
                             f"{first.max_holes}; pass max_holes= so that every grid fits")
    return envs


class CryoEMVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`~cryorl.env.CryoEMEnv` (compact observation) stepped together.

    ## Description
    The same task as ``CryoEM-v0`` (read ``help(cryorl.CryoEMEnv)``), on ``num_envs`` grids at once. The state of
    every episode lives in ``(num_envs, max_holes)`` arrays, and :meth:`step` is one batch of numpy operations over
    all grids: the switch level of each move from the tile/square/patch ids, its minutes, its reward, the episode
    ends and the observation are computed for every sub-environment together, with no Python loop over grids or
    holes. Resets (the first one and the autoresets of finished episodes, which are rare) run the sub-environment's
    own ``CryoEMEnv.reset``, so grids, start holes and predicted probabilities are exactly the single
    environment's.

    ## Sub-environments and seeds
    Sub-environment ``i`` is ``CryoEMEnv(**kwargs)``, built with the kwargs ``gymnasium.make("CryoEM-v0",
    **kwargs)`` would get, and ``reset(seed=s)`` resets it with seed ``s + i`` (a list gives one seed each), as
    Gymnasium's ``SyncVectorEnv`` does; so a vector environment and N single environments given the same seeds
    and actions run the same episodes.

    ## Action Space
    ``MultiDiscrete([max_holes] * num_envs)``: the next hole of each grid. As in the single environment every
    integer is accepted: an invalid action (an exposed hole, a padded row, a number outside the grid; with a
    non-integer array, every action) earns ``invalid_action_penalty`` (-1), costs one hole move of time and
    changes nothing else; with ``invalid_action="raise"`` it raises ``ValueError`` before any grid moves.

    ## Observation Space
    The single environment's compact observation (:mod:`cryorl.features`) with a leading ``num_envs`` axis: the
    same keys, dtypes and values (``predicted_ctf``, ``predicted_good``, ``measured_ctf``, ``hierarchy``,
    ``is_hole``, ``visited``, ``current``, ``time_left``, ``costs``, ``threshold``, ``action_mask``). The papers'
    ``feature_set="cryorl"`` is not batched: use ``vectorization_mode="sync"`` for it.

    ## Rewards and Episode End
    As the single environment: ``switch_rewards[level]`` when the hole's true CTFMaxRes ≤ ``threshold``, else 0;
    ``terminated`` once elapsed minutes exceed the budget or no unvisited hole is left. ``truncated`` is set only
    with ``max_episode_steps`` (steps since the reset, invalid ones included, as Gymnasium's ``TimeLimit``).

    ## Autoreset
    ``autoreset_mode`` (also in ``metadata["autoreset_mode"]``) is Gymnasium's default, ``NEXT_STEP``: the step
    after an episode ends resets that grid (unseeded, continuing its generator, as ``SyncVectorEnv`` does), ignores
    its action and returns its first observation with reward 0 and no end. ``SAME_STEP`` resets it within the step
    that ends the episode and returns the last observation and info in ``info["final_obs"]`` /
    ``info["final_info"]`` — the convention of Stable-Baselines3's ``VecEnv`` (``terminal_observation``), for
    code written that way. ``DISABLED`` leaves resets to the caller (``reset(options={"reset_mask": mask})``);
    stepping a finished grid then raises ``RuntimeError``.

    ## Information
    The single environment's keys as arrays over sub-environments (``elapsed``, ``good_exposures``, ``exposures``,
    ``switch_level``, ``switch``, ``hole``, ``hole_index``, ``true_ctf``, ``predicted_ctf``, ``action_mask``), each
    with its ``_key`` mask of the sub-environments it describes, as ``SyncVectorEnv`` lays them out.
    :meth:`action_masks` gives the ``(num_envs, max_holes)`` valid actions (sb3-contrib convention).

    ## Arguments
    ``num_envs``; ``autoreset_mode`` (an :class:`~gymnasium.vector.AutoresetMode` or its value, default
    ``NEXT_STEP``); ``max_episode_steps`` (optional step limit); ``copy`` (default True: return fresh arrays; False
    returns the environment's own buffers, which the next step overwrites); every other keyword goes to
    :class:`~cryorl.env.CryoEMEnv` (``render_mode`` excepted: sub-environments are not rendered).
    """

    def __init__(self, num_envs: int = 1, *, autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 max_episode_steps: int | None = None, copy: bool = True, **env_kwargs: Any) -> None:
        self.autoreset_mode = _checked_settings(num_envs, autoreset_mode, max_episode_steps, env_kwargs)
        self.num_envs = int(num_envs)
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.copy = bool(copy)
        self._envs = _compact_envs(self.num_envs, env_kwargs)
        first = self._envs[0]
        self.metadata = {"render_modes": [], "autoreset_mode": self.autoreset_mode}
        self.render_mode = None
        self.max_holes = first.max_holes
        self.single_observation_space = observation_space(COMPACT_SCHEMA, self.max_holes)
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._cost_by_level = first.costs.as_array()
        self._switch_rewards = np.asarray(first.switch_rewards, dtype=np.float64)
        self._penalty = float(first.invalid_action_penalty)
        self._raise_invalid = first.invalid_action == "raise"
        self._rows = np.arange(self.num_envs)
        self._allocate(self.num_envs, self.max_holes)

    def _allocate(self, n: int, m: int) -> None:
        """The state of ``n`` grids of ``m`` hole rows: observation buffers, each grid's arrays, each episode's."""
        self._obs = {key.name: np.zeros((n, *key.shape(m)), dtype=key.dtype) for key in COMPACT_SCHEMA}
        # per grid (static until a sub-environment gets a new atlas)
        self._atlases: list[Atlas | None] = [None] * n
        self._n_holes = np.zeros(n, dtype=np.int64)
        self._good = np.zeros((n, m), dtype=bool)
        self._truth = np.zeros((n, m), dtype=np.float32)          # measured_ctf of an exposed hole
        self._names = np.full((n, m), None, dtype=object)
        self._true_ctf = np.zeros((n, m), dtype=np.float64)
        self._predicted_ctf = np.zeros((n, m), dtype=np.float64)
        # per episode
        self._current = np.zeros(n, dtype=np.int64)
        self._elapsed = np.zeros(n, dtype=np.float64)
        self._budget = np.zeros(n, dtype=np.float64)
        self._good_count = np.zeros(n, dtype=np.int64)
        self._exposures = np.zeros(n, dtype=np.int64)
        self._steps = np.zeros(n, dtype=np.int64)
        self._level = np.full(n, -1, dtype=np.int64)              # switch level of the last step, -1: no move
        self._needs_reset = np.ones(n, dtype=bool)                # episode ended (or never started)
        self._started = False

    # ------------------------------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset every sub-environment (or those of ``options["reset_mask"]``, a bool array of ``num_envs``);
        ``seed``: None, an int (sub-environment ``i`` gets ``seed + i``) or one seed per sub-environment; the
        other ``options`` (``start``, ``budget``) go to every reset sub-environment."""
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset(seed=…) as a list needs one seed per sub-environment ({self.num_envs}), "
                                 f"got {len(seeds)}")
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(self.num_envs, dtype=bool)
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},) with at "
                                 f"least one True, got {mask!r}")
        for i in np.flatnonzero(mask):
            self._reset_one(int(i), seed=seeds[i], options=options or None)
        self._started = True
        return self._observation(), self._info(mask)

    def step(self, actions) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One move on every grid (see the class docstring for autoresets); returns batched arrays."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        acting = self._acting()
        rewards, moved = self._move(actions, acting)
        terminated = acting & ((self._elapsed > self._budget) | (moved & (self._exposures + 1 >= self._n_holes)))
        truncated = (acting & (self._steps >= self.max_episode_steps) if self.max_episode_steps is not None
                     else np.zeros(self.num_envs, dtype=bool))
        final = self._autoreset(acting, terminated | truncated)
        everyone = np.ones(self.num_envs, dtype=bool)
        return self._observation(), rewards, terminated, truncated, {**final, **self._info(everyone)}

    def _acting(self) -> np.ndarray:
        """The sub-environments this step moves (under NEXT_STEP, those that ended last step are reset instead)."""
        if self.autoreset_mode is AutoresetMode.NEXT_STEP:
            return ~self._needs_reset
        if self.autoreset_mode is AutoresetMode.DISABLED and self._needs_reset.any():
            i = int(np.flatnonzero(self._needs_reset)[0])
            raise RuntimeError(f"sub-environment {i}'s episode has ended; reset it with "
                               f"reset(options={{'reset_mask': mask}}) before stepping it again")
        return np.ones(self.num_envs, dtype=bool)

    def _move(self, actions, acting: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move the ``acting`` sub-environments to their actions' holes (an invalid action costs a hole move and
        changes nothing else): the clock, the counters and the stepped observation keys. Returns the rewards and
        which sub-environments moved."""
        holes, integer = self._as_actions(actions)
        rows = self._rows
        in_grid = integer & (holes >= 0) & (holes < self._n_holes)
        target = np.where(in_grid, holes, 0)
        valid = in_grid & (self._obs["visited"][rows, target] == 0)
        if self._raise_invalid and not np.all(valid | ~acting):
            i = int(np.flatnonzero(acting & ~valid)[0])
            raise ValueError(f"sub-environment {i}: action {np.asarray(actions)[i]} is not an unvisited hole of "
                             f"its grid (0..{self._n_holes[i] - 1}); choose one of action_masks()[{i}]")
        moved = acting & valid
        src = self._current
        ids = self._obs["hierarchy"]                              # (N, max_holes, 3): tile, square, patch
        here, there = ids[rows, src], ids[rows, target]
        level = np.where(valid, switch_level(here[:, 2] == there[:, 2], here[:, 1] == there[:, 1],
                                             here[:, 0] == there[:, 0]), 0)     # an invalid action: a hole move
        np.add(self._elapsed, self._cost_by_level[level], out=self._elapsed, where=acting)
        good = moved & self._good[rows, target]
        rewards = np.where(moved, np.where(good, self._switch_rewards[level], 0.0),
                           np.where(acting, self._penalty, 0.0))
        r, h = rows[moved], target[moved]
        self._obs["current"][r, src[moved]] = 0
        self._obs["current"][r, h] = 1
        self._obs["visited"][r, h] = 1
        self._obs["action_mask"][r, h] = 0
        self._obs["measured_ctf"][r, h] = self._truth[r, h]
        self._obs["time_left"][:, 0] = np.clip(self._budget - self._elapsed, 0.0, MAX_MINUTES)
        self._current[moved] = h
        self._exposures += moved
        self._good_count += good
        self._steps += acting
        self._level = np.where(moved, level, -1)
        return rewards, moved

    def _autoreset(self, acting: np.ndarray, ended: np.ndarray) -> dict[str, Any]:
        """Reset per the autoreset mode; returns SAME_STEP's ``final_obs``/``final_info`` entries (else empty)."""
        final: dict[str, Any] = {}
        if self.autoreset_mode is AutoresetMode.NEXT_STEP:
            for i in np.flatnonzero(~acting):
                self._reset_one(int(i))
        elif self.autoreset_mode is AutoresetMode.SAME_STEP and ended.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(ended):
                final_obs[i] = {key: buffer[i].copy() for key, buffer in self._obs.items()}
            final = {"final_obs": final_obs, "_final_obs": ended.copy(),
                     "final_info": self._info(ended), "_final_info": ended.copy()}
            for i in np.flatnonzero(ended):
                self._reset_one(int(i))
            ended = np.zeros(self.num_envs, dtype=bool)       # those grids start their next episode now
        self._needs_reset = ended
        return final

    def action_masks(self) -> np.ndarray:
        """Valid actions (unvisited real holes) of every sub-environment, ``(num_envs, max_holes)`` bool."""
        return self._obs["action_mask"].astype(bool)

    @property
    def atlases(self) -> tuple[Atlas, ...]:
        """The grid each sub-environment is on now."""
        return tuple(self._atlases)

    # ------------------------------------------------------------------------------------------ helpers
    def _reset_one(self, i: int, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        """Reset sub-environment ``i`` through its ``CryoEMEnv`` and take its state into row ``i``."""
        env = self._envs[i]
        observation, _ = env.reset(seed=seed, options=options)
        for key, buffer in self._obs.items():
            buffer[i] = observation[key]
        atlas = env.atlas
        if atlas is not self._atlases[i]:
            n = len(atlas)
            self._atlases[i] = atlas
            self._n_holes[i] = n
            for buffer, values in ((self._good, atlas.is_good(env.threshold)), (self._truth, clip_ctf(atlas.true_ctf)),
                                   (self._names, atlas.names), (self._true_ctf, atlas.true_ctf),
                                   (self._predicted_ctf, atlas.predicted_ctf)):
                buffer[i, :n] = values
                buffer[i, n:] = None if buffer.dtype == object else 0
        self._current[i] = env.current_hole
        self._elapsed[i] = env.elapsed
        self._budget[i] = env.episode_budget
        self._good_count[i] = self._exposures[i] = self._steps[i] = 0
        self._level[i] = -1
        self._needs_reset[i] = False

    def _as_actions(self, actions) -> tuple[np.ndarray, bool]:
        """Actions as ``(num_envs,)`` int64 and whether they are integers (a non-integer action is invalid)."""
        array = np.asarray(actions)
        if array.shape != (self.num_envs,):
            raise ValueError(f"step() needs one action per sub-environment, shape ({self.num_envs},), "
                             f"got shape {array.shape}")
        if np.issubdtype(array.dtype, np.integer):
            return array.astype(np.int64, copy=False), True
        return np.zeros(self.num_envs, dtype=np.int64), False

    def _observation(self) -> dict[str, np.ndarray]:
        if not self.copy:
            return self._obs
        return {key: buffer.copy() for key, buffer in self._obs.items()}

    def _info(self, rows: np.ndarray) -> dict[str, Any]:
        """The single environment's info of the sub-environments in ``rows`` (bool), each key with its mask;
        other rows hold zeros (None in object arrays), as ``SyncVectorEnv`` lays it out."""
        everyone = self._rows
        current = self._current
        level = self._level
        info = {
            "elapsed": self._elapsed.copy(), "good_exposures": self._good_count.copy(),
            "exposures": self._exposures.copy(), "switch_level": level.copy(), "switch": _SWITCH_NAMES[level],
            "hole": self._names[everyone, current], "hole_index": current.copy(),
            "true_ctf": self._true_ctf[everyone, current], "predicted_ctf": self._predicted_ctf[everyone, current],
            "action_mask": self._obs["action_mask"].astype(bool),
        }
        if not rows.all():
            for values in info.values():
                values[~rows] = None if values.dtype == object else 0
        for key in list(info):
            info[f"_{key}"] = rows.copy()
        return info

    def close_extras(self, **kwargs: Any) -> None:
        for env in self._envs:
            env.close()

    def __repr__(self) -> str:
        name = f"{self.spec.id}, " if self.spec is not None else ""
        return f"CryoEMVectorEnv({name}num_envs={self.num_envs})"
