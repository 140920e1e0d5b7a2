"""Policies for CryoEM-v0: non-learned baselines, learned agents, human traces, and their evaluation."""
from __future__ import annotations

import os
from pathlib import Path

from cryorl.agents.base import Policy
from cryorl.agents.baselines import (
    BASELINES,
    GreedyLocalPolicy,
    HumanTracePolicy,
    OraclePolicy,
    PredictRankPolicy,
    RandomPolicy,
    SnowballPolicy,
    TwoThresholdGreedyPolicy,
)
from cryorl.agents.evaluation import Evaluation, evaluate, evaluate_policy, summarize
from cryorl.agents.planner import OnlinePlannerPolicy, PlannerPolicy
from cryorl.resources import PRETRAINED_DIR

__all__ = ["Policy", "BASELINES", "RandomPolicy", "PredictRankPolicy", "GreedyLocalPolicy",
           "TwoThresholdGreedyPolicy", "SnowballPolicy", "OraclePolicy", "HumanTracePolicy", "PlannerPolicy",
           "OnlinePlannerPolicy", "evaluate", "Evaluation", "evaluate_policy", "summarize", "make_policy",
           "AGENT_NAMES"]

RULES = {**BASELINES, "planner": PlannerPolicy, "planner-online": OnlinePlannerPolicy}
AGENT_NAMES = tuple(RULES) + ("dqn", "ppo")


def make_policy(agent: str | os.PathLike, seed: int | None = None) -> Policy:
    """A policy by name — a baseline (random, predict-rank, greedy-local, greedy-2t, snowball, oracle), the
    budget-aware ``planner`` (``planner-online``: recalibrated from the grid's measured exposures), or a shipped
    learned policy (dqn, ppo: in the package, ``agents/pretrained/`` in a checkout) — or the path of a saved policy
    folder (labelled by that path, as given; ``NAME=PATH`` labels it ``NAME``), or ``human-trace:PATH`` (a
    timestamps.csv or a file of hole names). The label is the policy's ``name``: what evaluation tables and reports
    show."""
    from cryorl.agents.learned import LearnedPolicy
    from cryorl.outputs import clip

    text = str(agent)
    if text in RULES:
        cls = RULES[text]
        return cls(seed=seed) if cls is RandomPolicy else cls()
    if text in ("dqn", "ppo"):
        folder = PRETRAINED_DIR / text
        if not folder.exists():
            raise ValueError(f"no shipped {text} policy at {folder}; train one with `cryorl train --algo {text}`")
        return LearnedPolicy.load(folder, name=text)
    if Path(text).is_dir():
        return LearnedPolicy.load(text, name=text)
    if text.startswith("human-trace:"):
        return HumanTracePolicy(Path(text.split(":", 1)[1]))
    label, named, folder = text.partition("=")
    if named:
        if not label.strip() or label != label.strip():
            raise ValueError(f"agent {clip(repr(text))}: NAME=PATH needs a name without surrounding spaces "
                             "before '='")
        if not Path(folder).expanduser().is_dir():
            raise ValueError(f"agent {clip(repr(text))}: no saved policy folder at {clip(folder)}")
        return LearnedPolicy.load(Path(folder).expanduser(), name=label)
    raise ValueError(f"unknown agent {clip(repr(text))}; choose one of {', '.join(AGENT_NAMES)}, a saved policy "
                     "folder (PATH or NAME=PATH), or human-trace:PATH")
