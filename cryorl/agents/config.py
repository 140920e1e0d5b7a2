"""The training config of the learned agents, typed and checked when it is read.

``agents/hyperparams/*.yml`` (cryorl's own format, laid out like rl-zoo3's: one section per environment id) becomes
a frozen :class:`TrainingConfig`. An unknown key, a value of the wrong type, or an SB3 hyper-parameter the chosen
algorithm does not take is an error that names the file and the key (``env.sources[1].predictions: …``), before any
training starts. :meth:`TrainingConfig.to_mapping` gives the mapping back (what ``run.json`` records).
"""
from __future__ import annotations

import inspect
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["TrainingConfig", "EnvSettings", "Source", "EvalSettings", "ImitationSettings", "ConfigError", "ALGOS",
           "load_config"]

ALGOS = ("dqn", "ppo")


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the key."""


def _number(value, where: str, kind: type):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if kind is int and float(value) != int(value):
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    return kind(value)


def _check(value, where: str, annotation: str):
    """Convert ``value`` to the field type named by ``annotation`` (the few the config uses)."""
    if annotation == "int":
        return _number(value, where, int)
    if annotation == "float":
        return _number(value, where, float)
    if annotation == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return value
    if annotation in ("dict", "dict | None"):
        if value is None and annotation.endswith("None"):
            return None
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation == "tuple[float, ...]":
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{where}: expected a non-empty list of numbers, got {value!r}")
        return tuple(_number(v, f"{where}[{i}]", float) for i, v in enumerate(value))
    if annotation == "tuple[int, ...]":
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of whole numbers, got {value!r}")
        return tuple(_number(v, f"{where}[{i}]", int) for i, v in enumerate(value))
    if annotation == "str | list | None":
        if value is not None and not isinstance(value, (str, list, tuple)):
            raise ConfigError(f"{where}: expected a cost preset name or 4 minutes, got {value!r}")
        return list(value) if isinstance(value, tuple) else value
    raise TypeError(f"no check for {annotation}")


def _at_least(value: float, low: float, where: str, inclusive: bool = True) -> None:
    if not (value >= low if inclusive else value > low) or value != value:
        raise ConfigError(f"{where}: must be {'at least' if inclusive else 'more than'} {low:g}, not {value!r}")


def _grid(value, where: str) -> dict | None:
    """A GridSpec mapping, checked now (unknown fields, impossible counts) rather than when training starts."""
    from cryorl.synth import GridSpec

    value = _check(value, where, "dict | None")
    if value is not None:
        try:
            GridSpec.from_mapping(value)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{where}: {error}") from None
    return value


def _build(cls, mapping, where: str, **nested):
    """``cls`` from ``mapping``: simple fields checked by their annotation, ``nested`` fields by their builder."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where or 'the config'}: expected a mapping, got {mapping!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise ConfigError(f"{where + '.' if where else ''}{unknown[0]}: unknown key (known: {', '.join(known)})")
    values = {}
    for name, value in mapping.items():
        key = f"{where}.{name}" if where else name
        values[name] = nested[name](value, key) if name in nested else _check(value, key, known[name].type)
    return cls(**values)


@dataclass(frozen=True)
class Source:
    """One training copy of the environment: a simulated grid (``grid``: a GridSpec mapping, redrawn every
    episode) or a real split (``data``: ``{dir, split, tiles}``), with regressor or ``classifier`` predictions and
    optionally its own ``costs``."""

    grid: dict | None = None
    data: dict | None = None
    predictions: str = "regressor"
    costs: str | list | None = None

    def __post_init__(self) -> None:
        if self.grid is not None:
            _grid(self.grid, "grid")
        if self.predictions not in ("regressor", "classifier"):
            raise ConfigError(f"predictions: 'regressor' or 'classifier', not {self.predictions!r}")
        if (self.grid is None) == (self.data is None):
            raise ConfigError("a source is either a simulated grid (grid: …) or real data (data: …)")

    @classmethod
    def parse(cls, value, where: str) -> Source:
        try:
            return _build(cls, value, where)
        except ConfigError as error:
            message = str(error)
            raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None


def _sources(value, where: str) -> tuple[Source, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of sources, got {value!r}")
    return tuple(Source.parse(v, f"{where}[{i}]") for i, v in enumerate(value))


@dataclass(frozen=True)
class EnvSettings:
    """The training environments: costs, threshold, the budgets drawn per episode, the opportunity cost per minute,
    the sources (one vectorized copy each) and how the copies run (``dummy``: in this process, ``subproc``)."""

    costs: str | list | None = "cryorl-2023"
    threshold: float = 6.0
    budgets: tuple[float, ...] = (480.0,)
    opportunity_cost: float = 0.0
    sources: tuple[Source, ...] = (Source(grid={}),)
    vec_env: str = "dummy"

    def __post_init__(self) -> None:
        if self.vec_env not in ("dummy", "subproc"):
            raise ConfigError(f"env.vec_env: 'dummy' or 'subproc', not {self.vec_env!r}")
        for i, budget in enumerate(self.budgets):
            _at_least(budget, 0.0, f"env.budgets[{i}]", inclusive=False)
        _at_least(self.threshold, 0.0, "env.threshold", inclusive=False)
        _at_least(self.opportunity_cost, 0.0, "env.opportunity_cost")

    @classmethod
    def parse(cls, value, where: str = "env") -> EnvSettings:
        return _build(cls, value, where, sources=_sources)


@dataclass(frozen=True)
class EvalSettings:
    """Held-out evaluation every ``freq`` steps (and before the first): simulated grids (``grid`` + ``grid_seeds``)
    and/or a real part (``data``), ``episodes`` starts at one ``budget``."""

    freq: int = 10000
    episodes: int = 5
    budget: float = 480.0
    grid: dict = field(default_factory=dict)
    grid_seeds: tuple[int, ...] = ()
    data: dict | None = None

    def __post_init__(self) -> None:
        _at_least(self.freq, 1, "eval.freq")
        _at_least(self.episodes, 1, "eval.episodes")
        _at_least(self.budget, 0.0, "eval.budget", inclusive=False)
        _grid(self.grid, "eval.grid")

    @classmethod
    def parse(cls, value, where: str = "eval") -> EvalSettings:
        return _build(cls, value, where)


@dataclass(frozen=True)
class ImitationSettings:
    """DAgger from the planner before RL (:func:`cryorl.agents.imitation.imitate`)."""

    rounds: int = 3
    steps_per_round: int = 10000
    follow_planner: float = 0.5
    epochs: float = 2.0
    batch_size: int = 128
    learning_rate: float = 1e-3
    margin: float = 0.5
    value_weight: float = 0.1
    smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.smoothing < 1.0:
            raise ConfigError(f"imitation.smoothing: a share in [0, 1), not {self.smoothing!r}")
        for name in ("rounds", "steps_per_round", "batch_size"):
            _at_least(getattr(self, name), 1, f"imitation.{name}")
        _at_least(self.epochs, 0.0, "imitation.epochs", inclusive=False)
        _at_least(self.learning_rate, 0.0, "imitation.learning_rate", inclusive=False)
        if not 0.0 <= self.follow_planner <= 1.0:
            raise ConfigError(f"imitation.follow_planner: a probability in [0, 1], not {self.follow_planner!r}")

    @classmethod
    def parse(cls, value, where: str = "imitation") -> ImitationSettings | None:
        return None if value is None else _build(cls, value, where)


@dataclass(frozen=True)
class TrainingConfig:
    """One learned agent's training: ``algo`` (dqn or ppo), RL steps after imitation (``n_timesteps``), the
    environments, held-out evaluation, imitation, checkpoints, and the SB3 hyper-parameters (``hyperparameters``:
    every other key of the file, checked against the algorithm's constructor)."""

    algo: str
    n_timesteps: int
    env: EnvSettings = EnvSettings()
    eval: EvalSettings = EvalSettings()
    imitation: ImitationSettings | None = None
    checkpoint_freq: int = 10000
    keep_checkpoints: int = 2
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _at_least(self.n_timesteps, 0, "n_timesteps")
        _at_least(self.checkpoint_freq, 1, "checkpoint_freq")
        _at_least(self.keep_checkpoints, 1, "keep_checkpoints")

    @property
    def gamma(self) -> float:
        return float(self.hyperparameters.get("gamma", 0.99))

    @property
    def hidden(self) -> int:
        return int(self.hyperparameters.get("policy_kwargs", {}).get("net_arch", [64])[0])

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any], source: str = "the config") -> TrainingConfig:
        """Parse and check a config mapping (the section of one environment id)."""
        if isinstance(mapping, TrainingConfig):
            return mapping
        try:
            if not isinstance(mapping, dict):
                raise ConfigError(f"expected a mapping, got {mapping!r}")
            algo = mapping.get("algo")
            if algo not in ALGOS:
                raise ConfigError(f"algo: one of {', '.join(ALGOS)}, not {algo!r}")
            own = {f.name for f in fields(cls)} - {"hyperparameters"}
            hyperparameters = {k: v for k, v in mapping.items() if k not in own}
            _check_hyperparameters(algo, hyperparameters)
            config = _build(cls, {k: v for k, v in mapping.items() if k in own}, "",
                            env=lambda v, w: EnvSettings.parse(v, w), eval=lambda v, w: EvalSettings.parse(v, w),
                            imitation=lambda v, w: ImitationSettings.parse(v, w))
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
        except TypeError as error:            # a required key missing
            raise ConfigError(f"{source}: {error}") from None
        return TrainingConfig(**{**{f.name: getattr(config, f.name) for f in fields(cls)},
                                 "hyperparameters": hyperparameters})

    def to_mapping(self) -> dict[str, Any]:
        """The config as a plain mapping (SB3 hyper-parameters at the top level, as in the file)."""
        data = asdict(self)
        hyperparameters = data.pop("hyperparameters")
        data["env"]["sources"] = [{k: v for k, v in s.items() if v is not None} for s in data["env"]["sources"]]
        return {**data, **hyperparameters}


def _check_hyperparameters(algo: str, hyperparameters: dict[str, Any]) -> None:
    from sb3_contrib import MaskablePPO

    from cryorl.agents.sb3 import MaskedDQN

    cls = MaskedDQN if algo == "dqn" else MaskablePPO
    taken = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            taken |= set(inspect.signature(klass.__init__).parameters)
    reserved = {"self", "policy", "env", "seed", "tensorboard_log", "verbose", "args", "kwargs"}
    for key in hyperparameters:
        if key not in taken or key in reserved:
            raise ConfigError(f"{key}: not a {cls.__name__} hyper-parameter (nor a cryorl key: algo, n_timesteps, "
                              "env, eval, imitation, checkpoint_freq, keep_checkpoints)")


def load_config(path: str | os.PathLike, env_id: str = "CryoEM-v0") -> TrainingConfig:
    """Read and check the ``env_id`` section of a training config file."""
    import yaml

    path = Path(path)
    with open(path) as handle:
        document = yaml.safe_load(handle)
    if not isinstance(document, dict) or env_id not in document:
        raise ConfigError(f"{path}: expected a mapping with a {env_id!r} section (one section per environment id)")
    return TrainingConfig.from_mapping(document[env_id], str(path))
