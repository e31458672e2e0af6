"""Backbones for skeleton action recognition and a registry to build them by name."""

from shapmix.models.registry import available_models, build_model, get_model_builder, register_model
from shapmix.models.ctrgcn import CTRGCN, load_original_checkpoint  # noqa: E402  (registers "ctrgcn")
from shapmix.models.infogcn import InfoGCN  # noqa: E402  (registers "infogcn")
from shapmix.models.hdgcn import HDGCN  # noqa: E402  (registers "hdgcn")

__all__ = [
    "build_model",
    "register_model",
    "available_models",
    "get_model_builder",
    "CTRGCN",
    "InfoGCN",
    "HDGCN",
    "load_original_checkpoint",
]
