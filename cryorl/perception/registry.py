"""The model registry: every backbone by name, its family and default configuration (timm's shape, our code).

    create_model("resnet18", in_chans=1, num_outputs=1)          # a regressor of CTFMaxRes from 150 x 150 crops
    create_model("crossvit_tiny", num_outputs=8, drop=0.1)       # overrides replace configuration entries
    list_models("crossvit*")
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = ["register_model", "create_model", "list_models", "model_entry", "ModelEntry"]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    builder: Callable[..., nn.Module]
    config: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    input_shape: tuple[int, ...] = (1, 150, 150)       # (channels, H, W), or (frames, channels, H, W) for movies

    @property
    def takes_movies(self) -> bool:
        """Whether the model reads exposure movie stacks (frames, channels, H, W) rather than single images."""
        return len(self.input_shape) == 4


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, family: str, builder: Callable[..., nn.Module], description: str = "",
                   input_shape: tuple[int, ...] = (1, 150, 150), **config: Any) -> None:
    """Register a variant: ``builder(in_chans=…, num_outputs=…, **config)`` builds it."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = ModelEntry(name, family, builder, dict(config), description, input_shape)


def model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def create_model(name: str, in_chans: int = 1, num_outputs: int = 1, **overrides: Any) -> nn.Module:
    """Build a registered model; ``overrides`` replace entries of its configuration."""
    entry = model_entry(name)
    unknown = set(overrides) - set(entry.config)
    if unknown:
        raise ValueError(f"{name} has no setting {sorted(unknown)}; settings: {sorted(entry.config)}")
    model = entry.builder(in_chans=in_chans, num_outputs=num_outputs, **{**entry.config, **overrides})
    model.registry_name = name
    return model


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Registered names matching a shell pattern (and family), sorted."""
    return sorted(n for n, e in _REGISTRY.items() if fnmatch.fnmatch(n, pattern)
                  and (family is None or e.family == family))
