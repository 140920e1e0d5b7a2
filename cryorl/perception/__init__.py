"""Perception: hole-quality models on low-magnification hole images, and the backbone registry they draw on.

The registry (:mod:`cryorl.perception.registry`) imports no model family; this package imports every family
module, each of which registers its variants (timm's arrangement: no import cycle).
"""
from cryorl.perception import blnet, crossvit, graft, regionvit, resnet, temporal  # noqa: F401  (they register)
from cryorl.perception.complexity import count_macs, count_parameters, model_table
from cryorl.perception.registry import create_model, list_models, model_entry, register_model

__all__ = ["create_model", "list_models", "model_entry", "register_model", "count_parameters", "count_macs",
           "model_table"]
