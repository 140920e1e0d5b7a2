"""The learned policies shipped inside the package (``resources/pretrained/dqn`` and ``ppo``), registered by name.
Torch is imported only when one is built."""
from __future__ import annotations

from cryorl.agents.base import Policy
from cryorl.agents.registry import register_folder_loader, register_policy
from cryorl.resources import PRETRAINED_DIR

__all__ = ["shipped_policy", "SHIPPED"]

SHIPPED = ("dqn", "ppo")


def shipped_policy(name: str) -> Policy:
    """The shipped learned policy ``name`` (dqn or ppo)."""
    from cryorl.agents.learned import LearnedPolicy

    folder = PRETRAINED_DIR / name
    if not folder.exists():
        raise ValueError(f"no shipped {name} policy at {folder}; train one with `cryorl train --algo {name}`")
    return LearnedPolicy.load(folder, name=name)


def load_policy_folder(folder, label: str) -> Policy:
    """A learned policy saved in ``folder`` (``cryorl train``'s ``best/`` or ``policy/``), labelled ``label``."""
    from cryorl.agents.learned import LearnedPolicy

    return LearnedPolicy.load(folder, name=label)


register_folder_loader(load_policy_folder)
register_policy("dqn", lambda seed: shipped_policy("dqn"), "the shipped masked DQN (imitation of the planner, then "
                "RL)")
register_policy("ppo", lambda seed: shipped_policy("ppo"), "the shipped MaskablePPO (imitation of the planner, then "
                "RL)")
