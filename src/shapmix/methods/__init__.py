"""Training methods: each changes a training step through the hooks of
:class:`~shapmix.methods.base.TrainingMethod`; the trainer never names one.

One module per method family (:mod:`.mixers`, :mod:`.shapmix`, :mod:`.glmc`, ...);
:mod:`.registry` maps ``method.name`` to its builder.
"""

from .base import MethodInputs, MixingMethod, TrainingMethod, TrainingNetwork
from .bcl import BCLMethod
from .glmc import GLMCMethod
from .paco import PaCoMethod
from .registry import BASELINE_METHODS, METHOD_BUILDERS, build_method
from .ride import RIDEExpertsMethod, RIDERouterMethod
from .shapmix import ShapMixMethod

__all__ = [
    "BASELINE_METHODS",
    "BCLMethod",
    "METHOD_BUILDERS",
    "GLMCMethod",
    "MethodInputs",
    "MixingMethod",
    "PaCoMethod",
    "RIDEExpertsMethod",
    "RIDERouterMethod",
    "ShapMixMethod",
    "TrainingMethod",
    "TrainingNetwork",
    "build_method",
]
