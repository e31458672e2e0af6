"""Backbones for skeleton action recognition and a registry to build them by name."""

from shapmix.models.registry import available_models, build_model, get_model_builder, register_model
from shapmix.models.ctrgcn import CTRGCN, load_original_checkpoint  # noqa: E402  (registers "ctrgcn")

__all__ = [
    "build_model",
    "register_model",
    "available_models",
    "get_model_builder",
    "CTRGCN",
    "load_original_checkpoint",
]
