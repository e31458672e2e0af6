"""Backbones for skeleton action recognition and a registry to build them by name.

Importing a backbone's module registers it: ``ctrgcn`` (CTR-GCN), ``stgcnpp`` (ST-GCN++),
``agcn`` (2s-AGCN, one stream), ``infogcn`` (InfoGCN) and ``hdgcn`` (HD-GCN).
"""

from shapmix.models.registry import available_models, build_model, get_model_builder, register_model
from shapmix.models.loading import load_original_checkpoint
from shapmix.models.ctrgcn import CTRGCN
from shapmix.models.stgcnpp import STGCNPP
from shapmix.models.agcn import AGCN
from shapmix.models.infogcn import InfoGCN
from shapmix.models.hdgcn import HDGCN

__all__ = [
    "build_model",
    "register_model",
    "available_models",
    "get_model_builder",
    "CTRGCN",
    "STGCNPP",
    "AGCN",
    "InfoGCN",
    "HDGCN",
    "load_original_checkpoint",
]
