"""Backbones for skeleton action recognition and a registry to build them by name."""

from shapmix.models.registry import available_models, build_model, get_model_builder, register_model
from shapmix.models.loading import load_original_checkpoint
from shapmix.models.ctrgcn import CTRGCN  # noqa: E402  (importing a backbone's module registers it)
from shapmix.models.stgcnpp import STGCNPP  # noqa: E402  (registers "stgcnpp")
from shapmix.models.agcn import AGCN  # noqa: E402  (registers "agcn")

__all__ = [
    "build_model",
    "register_model",
    "available_models",
    "get_model_builder",
    "CTRGCN",
    "STGCNPP",
    "AGCN",
    "load_original_checkpoint",
]
