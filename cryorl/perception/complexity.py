"""Parameter and multiply-accumulate counts of a model at an input size (torch's FLOP counter)."""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_parameters", "count_macs", "model_table"]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on one input of ``input_shape`` (no batch dimension), on the
    model's device (a model on the ``meta`` device is counted from shapes alone, without arithmetic)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape, device=device))
    model.train(was_training)
    return counter.get_total_flops() // 2


def model_table(names: list[str] | None = None) -> pd.DataFrame:
    """Family, parameters (M) and GMACs at each registered model's default input (built on the meta device, so
    listing every backbone takes about a second, not a forward pass of each)."""
    from cryorl.perception.registry import create_model, list_models, model_entry

    rows = []
    for name in names or list_models():
        entry = model_entry(name)
        with torch.device("meta"):                     # shapes only: no weights initialised, no arithmetic
            model = create_model(name)
        rows.append({"model": name, "family": entry.family, "input": "×".join(map(str, entry.input_shape)),
                     "params (M)": count_parameters(model) / 1e6,
                     "GMACs": count_macs(model, entry.input_shape) / 1e9, "description": entry.description})
    return pd.DataFrame(rows)
