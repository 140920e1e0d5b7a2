"""cryorl: cryo-EM data collection as a reinforcement-learning problem.

``import cryorl`` registers the Gymnasium environment ``CryoEM-v0`` (also reachable as ``"cryorl:CryoEM-v0"``) by
its entry-point string, and imports nothing else: each public name below is imported on first use (PEP 562), so
``import cryorl`` and the command line start in a fraction of a second.
"""
from importlib import import_module

import gymnasium

__version__ = "0.2.0"

# public name -> (module, attribute): imported when first asked for
_LAZY = {
    "Evaluation": ("cryorl.agents", "Evaluation"),
    "evaluate": ("cryorl.agents", "evaluate"),
    "make_policy": ("cryorl.agents", "make_policy"),
    "Atlas": ("cryorl.atlas", "Atlas"),
    "AtlasError": ("cryorl.atlas", "AtlasError"),
    "COST_PRESETS": ("cryorl.costs", "COST_PRESETS"),
    "CollectionCosts": ("cryorl.costs", "CollectionCosts"),
    "CryoEMEnv": ("cryorl.env", "CryoEMEnv"),
    "Grid": ("cryorl.formats", "Grid"),
    "load_grid": ("cryorl.formats", "load_grid"),
    "HumanTrace": ("cryorl.human", "HumanTrace"),
    "load_human_trace": ("cryorl.human", "load_human_trace"),
    "DataFileError": ("cryorl.loaders", "DataFileError"),
    "load_cryorl_dataset": ("cryorl.loaders", "load_cryorl_dataset"),
    "Plan": ("cryorl.planning", "Plan"),
    "plan": ("cryorl.planning", "make_plan"),
    "GridSpec": ("cryorl.synth", "GridSpec"),
    "simulate_atlas": ("cryorl.synth", "simulate_atlas"),
}

__all__ = [*_LAZY, "ENV_IDS", "__version__"]

ENV_IDS = ("CryoEM-v0",)


def __getattr__(name: str):
    """Import a public name's module on first use (``cryorl.Atlas``, ``from cryorl import load_grid``)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'cryorl' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(import_module(module), attribute)
    globals()[name] = value                           # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def _register() -> None:
    for env_id in ENV_IDS:
        if env_id not in gymnasium.registry:
            gymnasium.register(env_id, entry_point="cryorl.env:CryoEMEnv",
                               vector_entry_point="cryorl.vector_env:CryoEMVectorEnv")


_register()
