"""A name -> builder registry for backbones.

Builders are classes or functions called as
``builder(num_classes=..., layout=..., num_persons=..., in_channels=..., **kwargs)`` and return an
``nn.Module`` mapping ``(N, C, T, V, M)`` skeleton batches to ``(N, num_classes)`` logits.

Example::

    @register_model("mynet")
    class MyNet(nn.Module): ...

    model = build_model("mynet", num_classes=60, layout="ntu25", num_persons=2)
"""

from __future__ import annotations

from typing import Callable, TypeVar

from torch import nn

from shapmix.skeleton.layouts import Layout

__all__ = ["register_model", "build_model", "available_models", "get_model_builder"]

ModelBuilder = Callable[..., nn.Module]
_B = TypeVar("_B", bound=ModelBuilder)

_REGISTRY: dict[str, ModelBuilder] = {}


def _key(name: str) -> str:
    return name.strip().lower()


def register_model(
    name: str, builder: ModelBuilder | None = None, *, overwrite: bool = False
) -> Callable[[_B], _B] | ModelBuilder:
    """Register ``builder`` under ``name`` (case-insensitive).

    Use as a decorator, ``@register_model("name")``, or call directly,
    ``register_model("name", builder)``.  Registering a taken name is an error unless
    ``overwrite=True``.  Returns the builder (or the decorator).
    """

    def add(fn: _B) -> _B:
        key = _key(name)
        if not key:
            raise ValueError("a model name must not be empty")
        if key in _REGISTRY and not overwrite and _REGISTRY[key] is not fn:
            raise ValueError(f"a model named {name!r} is already registered")
        _REGISTRY[key] = fn
        return fn

    if builder is not None:
        return add(builder)
    return add


def available_models() -> list[str]:
    """Sorted names of the registered models."""
    return sorted(_REGISTRY)


def get_model_builder(name: str) -> ModelBuilder:
    """The builder registered under ``name``; ``KeyError`` listing the available names."""
    try:
        return _REGISTRY[_key(name)]
    except KeyError:
        raise KeyError(
            f"unknown model {name!r}; available models: {', '.join(available_models()) or '(none)'}"
        ) from None


def build_model(
    name: str,
    num_classes: int,
    layout: str | Layout,
    num_persons: int,
    in_channels: int = 3,
    **kwargs,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name, e.g. ``"ctrgcn"``.
        num_classes: number of output logits.
        layout: skeleton layout name or :class:`Layout` (fixes ``V`` and the graph).
        num_persons: ``M``, persons per sample.
        in_channels: ``C``, coordinates per joint (3 for xyz, 2 for 2D keypoints).
        **kwargs: model-specific options (e.g. ``base_channels``, ``num_blocks``, ``dropout``).

    Returns:
        the model, an ``nn.Module`` taking ``(N, C, T, V, M)`` and returning ``(N, num_classes)``.
    """
    builder = get_model_builder(name)
    return builder(
        num_classes=num_classes,
        layout=layout,
        num_persons=num_persons,
        in_channels=in_channels,
        **kwargs,
    )
