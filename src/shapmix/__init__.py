"""shapmix: long-tailed skeleton-based action recognition with Shap-Mix (IJCAI 2024).

The names a user needs, importable from the package itself::

    import shapmix

    config = shapmix.load_config(None, ["schedule.epochs=5"])
    shapmix.train(config, "runs/demo")
    report = shapmix.predict("runs/demo/last.pt", ["clip.skeleton"])

They are imported on first use (PEP 562), so ``import shapmix`` stays light: it loads neither
torch nor matplotlib until a name that needs them is used.  The README's "Use shapmix from
Python" section shows them at work.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("shapmix")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

_HOMES = {
    # data, layouts and configuration
    "get_layout": ".skeleton.layouts",
    "load_dataset": ".data.format",
    "SynthConfig": ".data.synthetic",
    "generate_synthetic": ".data.synthetic",
    "Config": ".config",
    "load_config": ".config",
    # models
    "build_model": ".models",
    "available_models": ".models",
    "CTRGCN": ".models",
    "load_original_checkpoint": ".models",
    # mixing, saliency and losses
    "Mixup": ".mixing",
    "CutMix": ".mixing",
    "STMix": ".mixing",
    "ShapMix": ".mixing",
    "SaliencyTable": ".mixing",
    "PartCombinations": ".mixing",
    "BalancedSoftmax": ".losses",
    # training and evaluation
    "train": ".engine.trainer",
    "evaluate_checkpoint": ".engine.evaluate",
    "Metrics": ".engine.evaluate",
    # using a trained model
    "Predictor": ".engine.predict",
    "predict": ".engine.predict",
    "Explainer": ".analysis.explain",
    "ensemble_runs": ".engine.ensemble",
    "export_checkpoint": ".engine.export",
}

__all__ = ["__version__", *_HOMES]

if TYPE_CHECKING:  # static type checkers and IDEs see the real names
    from .analysis.explain import Explainer
    from .config import Config, load_config
    from .data.format import load_dataset
    from .data.synthetic import SynthConfig, generate_synthetic
    from .engine.ensemble import ensemble_runs
    from .engine.evaluate import Metrics, evaluate_checkpoint
    from .engine.export import export_checkpoint
    from .engine.predict import Predictor, predict
    from .engine.trainer import train
    from .losses import BalancedSoftmax
    from .mixing import CutMix, Mixup, PartCombinations, SaliencyTable, ShapMix, STMix
    from .models import CTRGCN, available_models, build_model, load_original_checkpoint
    from .skeleton.layouts import get_layout


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'shapmix' has no attribute {name!r}")
    value = getattr(import_module(_HOMES[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
