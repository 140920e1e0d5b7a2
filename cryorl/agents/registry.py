"""The policy registry: every agent a name can ask for (``--agent NAME``, :func:`make_policy`, the benchmark's
defaults, the CLI's help) is registered here once, by the module that defines it.

A new baseline is one class with one ``register_policy`` call beside it; the CLI, ``make_policy``, the benchmark's
default agents and the tests that walk every registered policy pick it up.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryorl.agents.base import Policy

__all__ = ["PolicyEntry", "register_policy", "register_prefix", "register_folder_loader", "policy_entries",
           "policy_names", "make_policy", "agent_paths"]


@dataclass(frozen=True)
class PolicyEntry:
    """A registered policy: ``factory(seed)`` builds it (``seed`` for random policies; others ignore it)."""
    name: str
    factory: Callable[[int | None], Policy]
    description: str
    benchmark: bool = True           # among `cryorl benchmark`'s default agents
    needs_truth: bool = False        # reads the true CTFMaxRes (the oracle): a bound, not an agent


_POLICIES: dict[str, PolicyEntry] = {}
_PREFIXES: dict[str, Callable[[str, int | None], Policy]] = {}
_FOLDER_LOADERS: list[Callable[[Path, str], Policy]] = []


def register_policy(name: str, factory: Callable[[int | None], Policy], description: str, *,
                    benchmark: bool = True, needs_truth: bool = False) -> PolicyEntry:
    """Register ``factory`` under ``name`` (new names only)."""
    if name in _POLICIES:
        raise ValueError(f"a policy named {name!r} is registered already")
    if "=" in name or ":" in name or os.sep in name:
        raise ValueError(f"policy name {name!r}: no '=', ':' or path separators (they introduce paths)")
    _POLICIES[name] = entry = PolicyEntry(name, factory, description, benchmark, needs_truth)
    return entry


def register_prefix(prefix: str, factory: Callable[[str, int | None], Policy]) -> None:
    """Agents written ``PREFIX<rest>`` (e.g. ``human-trace:PATH``) are built by ``factory(rest, seed)``."""
    if prefix in _PREFIXES:
        raise ValueError(f"the agent prefix {prefix!r} is registered already")
    _PREFIXES[prefix] = factory


def register_folder_loader(loader: Callable[[Path, str], Policy]) -> None:
    """``loader(folder, label)`` reads a saved policy folder (the learned policies' format registers one)."""
    _FOLDER_LOADERS.append(loader)


def _load_folder(folder: Path, label: str) -> Policy:
    if not _FOLDER_LOADERS:
        raise ValueError(f"no reader of saved policy folders is registered to read {folder}")
    return _FOLDER_LOADERS[0](folder, label)


def _is_folder(text: str) -> bool:
    try:
        return Path(text).is_dir()
    except OSError:                                  # e.g. a name too long to be a path: not a folder
        return False


def policy_entries() -> tuple[PolicyEntry, ...]:
    """Every registered policy, in registration order."""
    return tuple(_POLICIES.values())


def policy_names() -> tuple[str, ...]:
    return tuple(_POLICIES)


def make_policy(agent: str | os.PathLike, seed: int | None = None) -> Policy:
    """A policy by registered name (:func:`policy_names`: the baselines, the planners, the shipped dqn and ppo), or
    the path of a saved policy folder (labelled by that path, as given; ``NAME=PATH`` labels it ``NAME``), or
    ``human-trace:PATH`` (a timestamps.csv or a file of hole names). The label is the policy's ``name``: what
    evaluation tables and reports show."""
    from cryorl.outputs import clip

    text = str(agent)
    if text in _POLICIES:
        return _POLICIES[text].factory(seed)
    for prefix, factory in _PREFIXES.items():
        if text.startswith(prefix):
            return factory(text[len(prefix):], seed)
    if _is_folder(text):
        return _load_folder(Path(text), text)
    label, named, folder = text.partition("=")
    if named:
        if not label.strip() or label != label.strip():
            raise ValueError(f"agent {clip(repr(text))}: NAME=PATH needs a name without surrounding spaces "
                             "before '='")
        if not _is_folder(str(Path(folder).expanduser())):
            raise ValueError(f"agent {clip(repr(text))}: no saved policy folder at {clip(folder)}")
        return _load_folder(Path(folder).expanduser(), label)
    raise ValueError(f"unknown agent {clip(repr(text))}; choose one of {', '.join(_POLICIES)}, a saved policy "
                     "folder (PATH or NAME=PATH), or human-trace:PATH")


def agent_paths(agents: list[str]) -> list[Path]:
    """The files and folders named by agent specs (a saved policy folder as PATH or NAME=PATH, human-trace:PATH):
    inputs an output folder must not replace."""
    paths = []
    for agent in agents:
        if agent.startswith("human-trace:"):
            paths.append(Path(agent.split(":", 1)[1]))
        elif not os.path.lexists(Path(agent).expanduser()) and "=" in agent:
            paths.append(Path(agent.partition("=")[2]))
        else:
            paths.append(Path(agent))
    return [p for p in paths if os.path.lexists(p.expanduser())]
