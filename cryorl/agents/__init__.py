"""Policies for CryoEM-v0: non-learned baselines, learned agents, human traces, and their evaluation.

Every agent a name asks for is in the policy registry (:mod:`cryorl.agents.registry`), filled by the modules
imported here: the baselines, the planners (and the planner ceilings, which read the outcomes as the oracle does),
the shipped learned policies.
"""
from __future__ import annotations

from cryorl.agents.base import Policy
from cryorl.agents.baselines import (
    GreedyLocalPolicy,
    GridPolicy,
    HumanTracePolicy,
    OraclePolicy,
    PredictRankPolicy,
    RandomPolicy,
    SnowballPolicy,
    TwoThresholdGreedyPolicy,
)
from cryorl.agents.ceilings import CeilingPlannerPolicy
from cryorl.agents.evaluation import Evaluation, evaluate, evaluate_policy, summarize
from cryorl.agents.planner import OnlinePlannerPolicy, PlannerPolicy
from cryorl.agents.registry import make_policy, policy_entries, policy_names, register_policy

__all__ = ["Policy", "GridPolicy", "RandomPolicy", "PredictRankPolicy", "GreedyLocalPolicy",
           "TwoThresholdGreedyPolicy", "SnowballPolicy", "OraclePolicy", "HumanTracePolicy", "PlannerPolicy",
           "OnlinePlannerPolicy", "CeilingPlannerPolicy", "evaluate", "Evaluation",
           "evaluate_policy", "summarize", "make_policy", "register_policy", "policy_entries", "policy_names"]

from cryorl.agents import shipped  # noqa: E402,F401  (registers dqn and ppo, after the rules: the listing's order)
