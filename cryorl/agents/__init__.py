"""Policies for CryoEM-v0: non-learned baselines, learned agents, human traces, and their evaluation."""
from __future__ import annotations

import os
from pathlib import Path

from cryorl.agents.base import Policy
from cryorl.agents.baselines import (BASELINES, GreedyLocalPolicy, HumanTracePolicy, OraclePolicy,
                                     PredictRankPolicy, RandomPolicy, SnowballPolicy)
from cryorl.agents.evaluation import evaluate_policy, summarize

__all__ = ["Policy", "BASELINES", "RandomPolicy", "PredictRankPolicy", "GreedyLocalPolicy", "SnowballPolicy",
           "OraclePolicy", "HumanTracePolicy", "evaluate_policy", "summarize", "make_policy", "AGENT_NAMES"]

AGENT_NAMES = tuple(BASELINES)


def make_policy(agent: str | os.PathLike, seed: int | None = None) -> Policy:
    """A policy by name (a baseline: random, predict-rank, greedy-local, snowball, oracle), or
    ``human-trace:PATH`` (a timestamps.csv or a file of hole names, one per line)."""
    text = str(agent)
    if text in BASELINES:
        cls = BASELINES[text]
        return cls(seed=seed) if cls is RandomPolicy else cls()
    if text.startswith("human-trace:"):
        path = Path(text.split(":", 1)[1])
        if path.suffix == ".csv" and "," in path.read_text().splitlines()[0]:
            return HumanTracePolicy(path)
        return HumanTracePolicy([line.strip() for line in path.read_text().splitlines() if line.strip()])
    raise ValueError(f"unknown agent {text!r}; choose one of {', '.join(AGENT_NAMES)}, or human-trace:PATH")
