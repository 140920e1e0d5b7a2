"""Named training recipes for ``cryorl perception train --recipe``: settings an option given on the command line
overrides one by one."""
from __future__ import annotations

__all__ = ["RECIPES", "apply_recipe"]

RECIPES: dict[str, dict] = {
    "default": {"backbone": "resnet10_small", "target": "regression", "loss": "smooth_l1", "input_size": 96,
                "epochs": 10, "batch_size": 64, "lr": 2e-3, "warmup_fraction": 0.15},
    # The CryoRL 2023 regressor (Fan et al.): ResNet-50, L2 loss, lr 5e-4, batch 128, 50 epochs under a cosine
    # schedule (here a warm-up over the first 2 % of the steps, then cosine annealing), 150 px crops resized to 224.
    "papers": {"backbone": "resnet50", "target": "regression", "loss": "l2", "input_size": 224, "epochs": 50,
               "batch_size": 128, "lr": 5e-4, "warmup_fraction": 0.02},
}


def apply_recipe(name: str, given: dict) -> dict:
    """The recipe's settings with every value in ``given`` that is not None put over them."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return {**RECIPES[name], **{k: v for k, v in given.items() if v is not None}}
