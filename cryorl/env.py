"""The cryo-EM collection task as a Gymnasium environment (``CryoEM-v0``)."""
from __future__ import annotations

import os
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from cryorl.atlas import Atlas
from cryorl.costs import SWITCH_LEVELS, CollectionCosts, get_costs, scalar_where, switch_level
from cryorl.features import make_feature_set
from cryorl.grids import FixedGrid, GridSource, SimulatedGrid
from cryorl.presets import resolve_settings
from cryorl.render import map_coordinates, render_ansi, render_rgb
from cryorl.synth import GridSpec

__all__ = ["CryoEMEnv", "CRYORL_SWITCH_REWARDS"]

CRYORL_SWITCH_REWARDS = (1.0, 0.9, 0.61, 0.5)
"""Reward of a good exposure reached by a hole / patch / square / tile switch (the CryoRL 2023 paper)."""
ENV_DEFAULTS = {"costs": "cryorl-2023", "budget": 480.0, "threshold": 6.0, "feature_set": "compact"}
"""Settings used where neither an argument nor a preset gives one."""


def _positive(value, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, not {value!r}") from None
    if not (np.isfinite(number) and number > 0):
        raise ValueError(f"{what} must be a positive, finite number, not {value!r}")
    return number


def _check_arguments(settings: dict[str, Any], render_mode, render_modes, invalid_action, switch_rewards,
                     invalid_action_penalty) -> None:
    """Refuse settings that make no sense, naming the value (numbers are checked where they are converted)."""
    if render_mode is not None and render_mode not in render_modes:
        raise ValueError(f"render_mode must be one of {render_modes}, not {render_mode!r}")
    if invalid_action not in ("raise", "penalize"):
        raise ValueError(f"invalid_action must be 'raise' or 'penalize', not {invalid_action!r}")
    if len(switch_rewards) != 4:
        raise ValueError(f"switch_rewards needs 4 values (hole, patch, square, tile), got {switch_rewards}")
    if not np.all(np.isfinite(np.asarray(switch_rewards, dtype=np.float64))):
        raise ValueError(f"switch_rewards must be finite numbers, got {switch_rewards}")
    if not np.isfinite(invalid_action_penalty):
        raise ValueError(f"invalid_action_penalty must be a finite number, not {invalid_action_penalty}")
    max_holes = settings["max_holes"]
    if max_holes is not None and (isinstance(max_holes, (bool, np.bool_))
                                  or not isinstance(max_holes, (int, np.integer))):
        raise ValueError(f"max_holes must be an integer number of holes, not {max_holes!r}")


def _grid_source(atlas: Atlas | None, grid, grid_seed: int | None, resample: bool, perception,
                 crops: np.ndarray | None) -> GridSource:
    """The environment's grid: a given atlas, a grid source, or simulated grids of a spec."""
    if atlas is not None:
        if grid is not None or grid_seed is not None:
            raise ValueError("pass either atlas= (a given grid) or grid=/grid_seed= (a simulated grid), not both")
        if resample:
            raise ValueError("resample_grid needs a simulated grid without grid_seed")
        return FixedGrid(atlas, perception, crops)
    if hasattr(grid, "for_reset"):
        if grid_seed is not None or resample or perception is not None:
            raise ValueError("a grid source (grid=FixedGrid/SimulatedGrid) carries its own seed, resampling and "
                             "perception")
        return grid
    spec = grid if isinstance(grid, GridSpec) else GridSpec.from_mapping(grid or {})
    return SimulatedGrid(spec, grid_seed, resample, perception)


class CryoEMEnv(gym.Env):
    """Collect as many good exposures as possible on a cryo-EM grid within a time budget.

    ## Description
    A grid was surveyed at low magnification: atlas tiles → squares → patches (hole-magnification images of ~20
    holes) → holes. Each hole has a *predicted* CTFMaxRes (Å) from its low-magnification image and a *true*
    CTFMaxRes that an exposure reveals. The agent picks the next hole to expose; moving the stage costs minutes,
    more the further it goes. A good exposure has true CTFMaxRes ≤ ``threshold`` (6 Å by default).

    With no arguments the grid is simulated (:mod:`cryorl.synth`, 2,341 holes shaped like the real Aldolase
    session) and drawn anew by every ``reset(seed=…)``; pass ``atlas=`` (e.g. ``cryorl.load_grid(...).atlas``)
    or ``preset=`` (a name or path of an ``envs/*.yaml`` file) for a given grid.

    ## Action Space
    ``Discrete(max_holes)``: the index of the next hole in the atlas's hole order (``atlas.names``). Only unvisited,
    real holes are valid: see ``action_masks()``, ``info["action_mask"]`` and ``observation["action_mask"]``. Any
    action in the action space is accepted, as Gymnasium promises: by default (``invalid_action="penalize"``) an
    invalid one (an exposed hole, a padded row) earns ``invalid_action_penalty`` (-1), costs one hole switch of time
    and changes nothing else, so plain Stable-Baselines3 agents train on the environment unchanged.
    ``invalid_action="raise"`` raises ``ValueError`` instead, for debugging a policy that should never do that.

    ## Observation Space
    A ``Dict`` of per-hole arrays padded to ``max_holes`` rows (padded rows are never valid actions); see
    :mod:`cryorl.features`: ``feature_set="compact"`` (default: raw per-hole facts, measured CTF of exposed holes,
    minutes left) or ``"cryorl"`` (the papers' 4 × 32 = 128 features per hole; 4 × 17 with classifier predictions).

    ## Starting State
    A uniformly random hole (or ``options={"start": i}``, an index or a hole name), marked visited; elapsed time 0;
    it earns nothing. ``options={"budget": minutes}`` sets the budget of that episode only.

    ## Rewards
    Moving from the current hole to hole ``a`` is a switch of level 0 (same patch), 1 (other patch, same square),
    2 (other square, same tile) or 3 (other tile), costing ``costs`` minutes (preset ``cryorl-2023``: 1/2/6/8).
    If ``a``'s true CTFMaxRes ≤ threshold the reward is ``switch_rewards[level]`` (1.0/0.9/0.61/0.5), else 0.

    ## Episode End
    ``terminated`` once elapsed minutes are strictly greater than ``budget`` (the step that crosses the budget
    still earns its reward), or when every hole is visited. ``truncated`` is never set by the environment.
    ``step()`` after the end raises ``RuntimeError``: call ``reset()``.

    ## Information
    ``elapsed`` (minutes), ``good_exposures``, ``exposures`` (holes exposed after the start hole),
    ``switch_level`` (-1 at reset), ``hole`` (name), ``hole_index``, ``true_ctf`` and ``predicted_ctf`` (Å) of the
    hole just exposed, and ``action_mask``.

    ## Arguments
    ``atlas`` (a grid of at least 2 holes), ``preset`` (its settings apply where an argument is left at None),
    ``costs`` (preset name, mapping or 4 minutes; default ``"cryorl-2023"``), ``budget`` (minutes, default 480),
    ``threshold`` (Å, default 6), ``feature_set`` (default ``"compact"``), ``max_holes`` (an integer, the padding;
    default the grid's hole count), ``switch_rewards``, ``grid`` (a :class:`~cryorl.synth.GridSpec` or mapping of
    its fields for simulated grids — ``{"n_holes": N}`` alone scales the real session's shape — or a grid source,
    :mod:`cryorl.grids`), ``grid_seed`` (fix
    the simulated grid; not with ``atlas``), ``resample_grid`` (draw a new simulated grid on every reset, seeded or
    not: for training), ``invalid_action`` (``"penalize"``, the default, or ``"raise"``),
    ``invalid_action_penalty``, ``render_mode`` (``"rgb_array"`` or ``"ansi"``; ``render()`` needs a ``reset()``
    first),
    ``perception`` (a :class:`~cryorl.perception.predictor.HoleQualityPredictor` or a saved one's folder: the
    predicted CTFMaxRes comes from it, run on hole crops — rendered from the sample model for simulated grids, or
    ``crops`` (N, H, W), one per hole of a given ``atlas``).

    ## Version History
    * v0: mechanics of the CryoRL reference implementation (Fan et al. 2023), uniform start over all holes.
    """

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 4}

    def __init__(self, atlas: Atlas | None = None, *, preset: str | os.PathLike | None = None,
                 costs: str | CollectionCosts | dict | tuple | list | None = None, budget: float | None = None,
                 threshold: float | None = None, feature_set: str | None = None, max_holes: int | None = None,
                 switch_rewards: tuple[float, float, float, float] = CRYORL_SWITCH_REWARDS,
                 grid: GridSpec | dict | GridSource | None = None, grid_seed: int | None = None,
                 resample_grid: bool = False, invalid_action: Literal["raise", "penalize"] = "penalize",
                 invalid_action_penalty: float = -1.0, render_mode: str | None = None, perception=None,
                 crops: np.ndarray | None = None) -> None:
        atlas, settings = resolve_settings(preset, atlas, ENV_DEFAULTS, costs=costs, budget=budget,
                                           threshold=threshold, feature_set=feature_set, max_holes=max_holes,
                                           grid=grid, grid_seed=grid_seed)
        _check_arguments(settings, render_mode, self.metadata["render_modes"], invalid_action, switch_rewards,
                         invalid_action_penalty)
        self.costs = get_costs(settings["costs"])
        self.budget = _positive(settings["budget"], "budget (minutes)")
        self.threshold = _positive(settings["threshold"], "threshold (Å)")
        self.feature_set_name = settings["feature_set"]
        self.switch_rewards = np.asarray(switch_rewards, dtype=np.float64)
        self.invalid_action = invalid_action
        self.invalid_action_penalty = float(invalid_action_penalty)
        self.render_mode = render_mode
        self._cost_by_level = self.costs.as_array()
        self.grid = _grid_source(atlas, settings["grid"], settings["grid_seed"], resample_grid, perception, crops)
        first = self.grid.first()
        self.max_holes = int(settings["max_holes"]) if settings["max_holes"] is not None else len(first)
        self._set_atlas(first)
        self.observation_space = self._features.observation_space()
        self.action_space = gym.spaces.Discrete(self.max_holes)
        self._current = -1
        self._done = False
        self._budget = self.budget

    # ---------------------------------------------------------------------------------------------- atlas
    def _set_atlas(self, atlas: Atlas) -> None:
        if len(atlas) < 2:
            where = atlas.source or "this atlas"
            raise ValueError(f"a grid needs at least 2 holes (a start and one to expose); {where} has {len(atlas)}")
        if len(atlas) > self.max_holes:
            raise ValueError(f"the grid has {len(atlas)} holes but max_holes is {self.max_holes}; raise max_holes")
        self.atlas = atlas
        self._n = len(atlas)
        self._tile, self._square, self._patch = atlas.tile, atlas.square, atlas.patch
        self._good = atlas.is_good(self.threshold)
        self._features = make_feature_set(self.feature_set_name, atlas, self.max_holes, self.threshold,
                                          self._cost_by_level)
        self._coordinates = None

    # ------------------------------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        atlas = self.grid.for_reset(self.np_random, seeded=seed is not None)
        if atlas is not None:
            self._set_atlas(atlas)
        options = options or {}
        unknown = set(options) - {"start", "budget"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; known: 'start' (hole), 'budget' (minutes)")
        self._budget = _positive(options.get("budget", self.budget), "budget (minutes)")
        if "start" in options:
            start = options["start"]
            if isinstance(start, str) or not isinstance(start, (int, np.integer, np.ndarray)):
                start = self.atlas.hole_index(start, "start hole")       # a name; anything else is refused
            start = self._check_hole(start, "start hole")
        else:
            start = int(self.np_random.integers(self._n))
        self._visited = np.zeros(self._n, dtype=bool)
        self._visited[start] = True
        self._current = start
        self._elapsed = 0.0
        self._good_count = 0
        self._exposures = 0
        self._path = [start]
        self._done = False
        self._features.reset(self._visited, start)
        info = self._info(-1, start)
        return self._observe(), info

    def step(self, action: int | np.integer) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._current < 0:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError(f"the episode has ended ({self._elapsed:g} of {self._budget:g} minutes spent, "
                               f"{self._exposures} exposures); call reset() to start another")
        hole = self._as_hole(action)
        if hole is None:
            self._elapsed += self._cost_by_level[0]
            self._done = terminated = bool(self._elapsed > self._budget)
            return self._observe(), self.invalid_action_penalty, terminated, False, self._info(-1, self._current)
        src = self._current
        level = switch_level(self._patch[src] == self._patch[hole], self._square[src] == self._square[hole],
                             self._tile[src] == self._tile[hole], where=scalar_where)
        self._elapsed += self._cost_by_level[level]
        good = bool(self._good[hole])
        reward = float(self.switch_rewards[level]) if good else 0.0
        self._good_count += good
        self._exposures += 1
        self._visited[hole] = True
        self._current = hole
        self._path.append(hole)
        self._features.update(self._visited, src, hole)
        self._done = terminated = bool(self._elapsed > self._budget or self._exposures + 1 >= self._n)
        return self._observe(), reward, terminated, False, self._info(level, hole)

    def action_masks(self) -> np.ndarray:
        """Valid actions (unvisited real holes) as a boolean array of ``max_holes`` (sb3-contrib convention)."""
        mask = np.zeros(self.max_holes, dtype=bool)
        mask[: self._n] = ~self._visited
        return mask

    def render(self) -> np.ndarray | str | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' or 'ansi'")
            return None
        if self._current < 0:
            raise RuntimeError("call reset() before render(): there is no episode to draw yet")
        if self.render_mode == "ansi":
            return render_ansi(self.atlas, self._visited, self._current, self._elapsed, self._budget,
                               self._good_count, self.threshold)
        if self._coordinates is None:
            self._coordinates = map_coordinates(self.atlas)
        title = (f"{self._elapsed:.0f}/{self._budget:g} min, {self._good_count} good of {self._exposures} "
                 f"exposures")
        return render_rgb(self.atlas, self._visited, self._path, title, self.threshold, self._coordinates)

    # ------------------------------------------------------------------------------------------ helpers
    @property
    def elapsed(self) -> float:
        """Minutes spent in the current episode."""
        return self._elapsed

    @property
    def episode_budget(self) -> float:
        """Budget (minutes) of the current episode."""
        return self._budget

    @property
    def current_hole(self) -> int:
        """Index of the hole the microscope is at."""
        return self._current

    @property
    def visited(self) -> np.ndarray:
        """Holes exposed so far in this episode (a read-only view; the start hole included)."""
        view = self._visited.view()
        view.flags.writeable = False
        return view

    @property
    def path(self) -> list[int]:
        """Holes visited so far in this episode, the start hole first."""
        return list(self._path)

    def _check_hole(self, value, what: str) -> int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            array = np.asarray(value)
            if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
                raise ValueError(f"{what} must be an integer hole index, got {value!r}")
            value = array.reshape(())
        index = int(value)
        if not 0 <= index < self._n:
            raise ValueError(f"{what} {index} is outside this grid's holes 0..{self._n - 1}"
                             + (f" (rows {self._n}..{self.max_holes - 1} are padding)" if self.max_holes > self._n
                                else ""))
        return index

    def _as_hole(self, action) -> int | None:
        try:
            hole = self._check_hole(action, "action")
            if self._visited[hole]:
                raise ValueError(f"action {hole} ({self.atlas.names[hole]}) was already exposed in this episode; "
                                 "choose an unvisited hole (see action_masks())")
        except ValueError:
            if self.invalid_action == "raise":
                raise
            return None
        return hole

    def _observe(self) -> dict[str, np.ndarray]:
        return self._features.observe(self._visited, self._current, self._budget - self._elapsed)

    def _info(self, level: int, hole: int) -> dict[str, Any]:
        return {
            "elapsed": self._elapsed, "good_exposures": self._good_count, "exposures": self._exposures,
            "switch_level": level, "switch": SWITCH_LEVELS[level] if level >= 0 else None,
            "hole": self.atlas.names[hole], "hole_index": hole,
            "true_ctf": float(self.atlas.true_ctf[hole]), "predicted_ctf": float(self.atlas.predicted_ctf[hole]),
            "action_mask": self.action_masks(),
        }
