"""The planner on probabilities that read the grid's outcomes: references for what a policy reading the predictions
and this grid's measured exposures could collect. Registered with ``needs_truth`` as the oracle is: references,
not agents (``cryorl plan`` refuses them).

- ``planner-recalibrated``: the calibration's log-odds recalibrated (bias and slope) on the grid's own outcomes —
  the best log-loss ``planner-online``'s update can reach, known from the first move;
- ``planner-neighbours``: that plus the mean residual of every other measured hole of the patch and square
  (:func:`cryorl.measured_neighbours.neighbour_probabilities`) — all that measured neighbours could teach, known
  before the first move;
- ``planner-outcomes``: the outcomes themselves (p 0.999 for a good hole, 0.001 otherwise, unmeasured holes
  included).

``cryorl evaluate --agent planner planner-neighbours planner-outcomes oracle --data DIR --split val --out OUT``
measures them on a grid whose holes' outcomes are known (at least 10 of them); ``python benchmarks/ceilings.py``
on the benchmark grids. They are ceilings in log-loss, not in good exposures: better-calibrated probabilities can
plan worse (README, At unseen prediction quality).
"""
from __future__ import annotations

import numpy as np

from cryorl.agents.planner import PlannerPolicy
from cryorl.agents.registry import register_policy
from cryorl.measured_neighbours import MIN_MEASURED_HOLES, GivenProbabilities, neighbour_probabilities

__all__ = ["CeilingPlannerPolicy", "KNOWLEDGE"]

KNOWLEDGE = ("recalibrated", "neighbours", "outcomes")
"""What a ceiling planner knows of the grid's outcomes (module docstring)."""


class CeilingPlannerPolicy(PlannerPolicy):
    """The planner on probabilities that know ``knows`` (one of :data:`KNOWLEDGE`) of the grid's outcomes."""

    def __init__(self, knows: str) -> None:
        if knows not in KNOWLEDGE:
            raise ValueError(f"a ceiling planner knows one of {', '.join(KNOWLEDGE)}, not {knows!r}")
        super().__init__()
        self.knows = knows
        self.name = f"planner-{knows}"

    def reset(self, env) -> None:
        atlas, threshold = env.atlas, env.threshold
        measured = int(np.isfinite(atlas.true_ctf).sum())
        if measured < MIN_MEASURED_HOLES:
            raise ValueError(f"{self.name} reads the grid's outcomes, and {atlas.source or 'the grid'} has "
                             f"{measured} measured holes (it needs at least {MIN_MEASURED_HOLES})")
        if self.knows == "outcomes":
            p = np.where(atlas.is_good(threshold), 0.999, 0.001)
        else:
            known = neighbour_probabilities(atlas, threshold=threshold)
            p = known["recalibrated" if self.knows == "recalibrated" else "with_neighbours"]
        self.calibration = GivenProbabilities(p, threshold)
        super().reset(env)


for _knows, _what in (("recalibrated", "the calibration recalibrated on the grid's own outcomes"),
                      ("neighbours", "the grid's recalibration and its other holes' outcomes per patch and square"),
                      ("outcomes", "the grid's outcomes themselves")):
    register_policy(f"planner-{_knows}", lambda seed, knows=_knows: CeilingPlannerPolicy(knows),
                    f"the planner on {_what}: a reference, not an agent", benchmark=False, needs_truth=True)
