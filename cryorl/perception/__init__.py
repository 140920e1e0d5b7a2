"""Perception: hole-quality models on low-magnification hole images, and the backbone registry they draw on."""
from cryorl.perception.complexity import count_macs, count_parameters, model_table
from cryorl.perception.registry import create_model, list_models, model_entry, register_model

__all__ = ["create_model", "list_models", "model_entry", "register_model", "count_parameters", "count_macs",
           "model_table"]
