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
    folder, or ``human-trace:PATH`` (a timestamps.csv or a file of hole names)."""
    from cryorl.agents.learned import LearnedPolicy

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
        return LearnedPolicy.load(text)
    if text.startswith("human-trace:"):
        return HumanTracePolicy(Path(text.split(":", 1)[1]))
    raise ValueError(f"unknown agent {text!r}; choose one of {', '.join(AGENT_NAMES)}, a saved policy folder, "
                     "or human-trace:PATH")
