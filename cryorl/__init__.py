"""cryorl: cryo-EM data collection as a reinforcement-learning problem.

``import cryorl`` registers the Gymnasium environment ``CryoEM-v0`` (also reachable as ``"cryorl:CryoEM-v0"``).
"""
import gymnasium

from cryorl.agents import Evaluation, evaluate, make_policy
from cryorl.atlas import Atlas, AtlasError
from cryorl.costs import COST_PRESETS, CollectionCosts
from cryorl.env import CryoEMEnv
from cryorl.formats import Grid, load_grid
from cryorl.human import HumanTrace, load_human_trace
from cryorl.loaders import DataFileError, load_cryorl_dataset
from cryorl.planning import Plan
from cryorl.planning import make_plan as plan
from cryorl.synth import GridSpec, simulate_atlas

__version__ = "0.2.0"
__all__ = ["Atlas", "AtlasError", "COST_PRESETS", "CollectionCosts", "CryoEMEnv", "DataFileError", "Evaluation",
           "Grid", "GridSpec", "HumanTrace", "evaluate", "load_cryorl_dataset", "load_grid", "load_human_trace",
           "make_policy",
           "plan", "Plan", "simulate_atlas", "ENV_IDS", "__version__"]

ENV_IDS = ("CryoEM-v0",)


def _register() -> None:
    for env_id in ENV_IDS:
        if env_id not in gymnasium.registry:
            gymnasium.register(env_id, entry_point="cryorl.env:CryoEMEnv",
                               vector_entry_point="cryorl.vector_env:CryoEMVectorEnv")


_register()
