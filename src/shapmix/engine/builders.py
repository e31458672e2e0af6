"""Turn a :class:`~shapmix.config.Config` into the objects a run needs.

Shared by training, ``shapmix eval`` and ``shapmix saliency`` so all of them see exactly the same
data, input pipeline and model for a given config; :func:`open_trained_run` rebuilds them from a
training checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from contextlib import AbstractContextManager
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler, SequentialSampler

from ..config import Config, DataConfig, ModelConfig, apply_overrides, build_config
from ..data.dataset import SkeletonSplit
from ..data.format import META_FILE, SkeletonData, load_dataset, read_name_list
from ..data.synthetic import GENERATOR_VERSION, generate_synthetic
from ..data.transforms import Compose, build_pipeline
from ..mixing.shapley import mean_sequence
from ..models import build_model
from ..models.ride import RIDEModel
from ..skeleton.layouts import Layout
from .checkpoint import load_checkpoint
from ..distributed import DistributedContext, resolve_device

__all__ = [
    "RunData",
    "TrainedRun",
    "cache_root",
    "synthetic_dataset_path",
    "open_run_data",
    "open_split",
    "build_run_model",
    "build_configured_model",
    "build_pipelines",
    "build_test_pipeline",
    "eval_loader",
    "mean_input_sequence",
    "open_trained_run",
]

CACHE_ENV = "SHAPMIX_CACHE"


def cache_root() -> Path:
    """``$SHAPMIX_CACHE``, else ``$XDG_CACHE_HOME/shapmix``, else ``~/.cache/shapmix``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "shapmix"


def synthetic_dataset_path(data_config: DataConfig) -> Path:
    """Cache directory of the synthetic dataset these generator settings produce (and this
    version of the generator: a new generator never reuses an older one's cache)."""
    key = {"generator_version": GENERATOR_VERSION, **data_config.synthetic.model_dump(mode="json")}
    settings = json.dumps(key, sort_keys=True)
    digest = hashlib.sha1(settings.encode()).hexdigest()[:12]
    return cache_root() / "synthetic" / digest


@dataclass
class RunData:
    """The dataset and the splits of one run."""

    dataset: SkeletonData
    train: SkeletonSplit
    test: SkeletonSplit
    val: SkeletonSplit | None

    @property
    def train_counts(self) -> np.ndarray:
        return self.train.class_counts()


def _resolve_dataset(config: DataConfig, context: DistributedContext) -> SkeletonData:
    if config.path is not None:
        return load_dataset(config.path)
    path = synthetic_dataset_path(config)
    if context.is_main and not (path / META_FILE).exists():
        _generate_into_cache(config, path)
    context.barrier()
    return load_dataset(path)


def _generate_into_cache(config: DataConfig, path: Path) -> None:
    """Generate the synthetic dataset in a private staging directory and rename it to
    ``path`` in one step.  Independent runs (a bench split over several processes, jobs of a
    cluster sharing a home directory) may start on the same uncached dataset at once: writing
    ``path`` in place would let one of them memory-map a file the other is still creating
    (a bus error), so every process generates on its own and the first rename wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        generate_synthetic(config.synthetic, staging)
        if path.exists() and not (path / META_FILE).exists():
            # Left half-written by a version of shapmix that generated in place.
            shutil.rmtree(path, ignore_errors=True)
        try:
            staging.rename(path)
        except OSError:
            if not (path / META_FILE).exists():
                raise
            # Another process finished the same dataset first; its copy is identical.
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def open_split(dataset: SkeletonData, spec: str) -> SkeletonSplit:
    """A split by name, or by the path of a name list (``*.txt``, one sample name per line),
    e.g. a published LT-NTU training list."""
    if spec.endswith(".txt") and spec not in dataset.splits:
        names = read_name_list(spec)
        return SkeletonSplit(dataset, split=spec, indices=dataset.indices_of(names, what=f"name list {spec}"))
    return SkeletonSplit(dataset, spec)


def open_run_data(config: Config, context: DistributedContext | None = None) -> RunData:
    """Open (or generate) the dataset and its train / test / optional val splits."""
    context = context or DistributedContext()
    dataset = _resolve_dataset(config.data, context)
    return RunData(
        dataset=dataset,
        train=open_split(dataset, config.data.train_split),
        test=open_split(dataset, config.data.test_split),
        val=open_split(dataset, config.data.val_split) if config.data.val_split else None,
    )


def build_run_model(config: Config, dataset: SkeletonData) -> nn.Module:
    """The configured backbone, sized for ``dataset`` (classes, layout, persons, channels)."""
    _, channels, _, _, persons = dataset.shape
    return build_configured_model(config.model, dataset.num_classes, dataset.layout, persons, channels)


def build_configured_model(
    config: ModelConfig, num_classes: int, layout: Layout | str, num_persons: int, in_channels: int
) -> nn.Module:
    """The model a ``model`` config section describes: the backbone ``config.name`` with
    ``config.args``, or, with ``config.ride_experts >= 2``, RIDE's experts on that backbone
    (:class:`~shapmix.models.ride.RIDEModel`)."""

    def backbone() -> nn.Module:
        return build_model(
            config.name, num_classes=num_classes, layout=layout, num_persons=num_persons, in_channels=in_channels,
            **config.args,
        )

    if config.ride_experts == 1:
        return backbone()
    return RIDEModel(
        backbone,
        config.ride_experts,
        shared_stages=config.ride_shared_stages,
        router_hidden=config.ride_router_hidden,
        router_top_k=config.ride_router_top_k,
        router_threshold=config.ride_router_threshold,
    )


def build_pipelines(config: Config, dataset: SkeletonData) -> tuple[Compose, Compose]:
    """``(train, test)`` batched input pipelines of the CTR-GCN recipe (test: the central crop)."""
    return (
        _pipeline(config, dataset.layout, dataset.channels, train=True),
        _pipeline(config, dataset.layout, dataset.channels, train=False),
    )


def build_test_pipeline(
    config: Config, layout: Layout | str, channels: Sequence[str], num_clips: int = 1
) -> Compose:
    """The test pipeline for data of ``layout`` with these channel names; ``num_clips > 1``
    scores that many uniformly spaced windows per sequence (the batch grows to ``N * num_clips``)."""
    return _pipeline(config, layout, channels, train=False, num_clips=num_clips)


def _pipeline(
    config: Config, layout: Layout | str, channels: Sequence[str], train: bool, num_clips: int = 1
) -> Compose:
    data = config.data
    coordinates = tuple(i for i, name in enumerate(channels) if name in ("x", "y", "z"))
    return build_pipeline(
        layout=layout,
        train=train,
        center=data.center and bool(coordinates),
        coordinate_channels=coordinates,
        window=data.window,
        p_interval=data.p_interval,
        test_crop=data.test_crop,
        min_crop_frames=data.min_crop_frames,
        # rotation turns x, y, z; data without exactly those three channels is not rotated
        rotation=data.rotation if train and coordinates == (0, 1, 2) else 0.0,
        modality=data.modality,
        num_clips=num_clips,
    )


def eval_loader(
    split: SkeletonSplit,
    batch_size: int,
    context: DistributedContext,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """An in-order loader over ``split``, sharded across ranks under DDP (``pin_memory`` for
    asynchronous copies to a GPU)."""
    sampler: Sampler
    if context.is_distributed:
        sampler = DistributedSampler(split, context.world_size, context.rank, shuffle=False)
    else:
        sampler = SequentialSampler(split)
    return DataLoader(split, batch_size=batch_size, sampler=sampler, num_workers=num_workers, pin_memory=pin_memory)


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""``train.precision`` -> the dtype ``torch.autocast`` computes in (fp32: no autocast)."""


def precision_context(precision: str, device: torch.device) -> AbstractContextManager:
    """The mixed-precision context of ``train.precision`` on ``device`` (inactive for fp32)."""
    return torch.autocast(
        device.type, dtype=AUTOCAST_DTYPES.get(precision, torch.bfloat16), enabled=precision in AUTOCAST_DTYPES
    )


def torch_threads(threads: int | None) -> None:
    """Apply the configured CPU thread count (None keeps torch's default)."""
    if threads is not None:
        torch.set_num_threads(threads)


@torch.no_grad()
def mean_input_sequence(
    split: SkeletonSplit,
    pipeline: Compose,
    batch_size: int,
    device: torch.device,
    context: DistributedContext,
) -> torch.Tensor:
    """``(C, T, V, M)`` mean of ``split`` after the deterministic (test) ``pipeline``.

    This is Shap-Mix's baseline for absent body parts, in the model's input space (joint, bone
    or motion), so a masked part looks like "an average sample" rather than like zeros.
    Under DDP each rank sums its shard (the sampler may repeat a few samples to even the shards
    out) and :func:`~shapmix.mixing.shapley.mean_sequence` reduces the sums and counts.
    """
    batches = (
        pipeline(batch.x.to(device), batch.length.to(device))[0] for batch in eval_loader(split, batch_size, context)
    )
    return mean_sequence(batches, reducer=context)


@dataclass
class TrainedRun:
    """A training checkpoint with the config, data, model and test pipeline it was trained with.

    Attributes:
        state: the checkpoint (:func:`~shapmix.engine.checkpoint.load_checkpoint`).
        config: the run's config, with the caller's overrides applied.
        data: the run's dataset and splits.
        model: the backbone with the checkpoint's weights, on ``device``.
        test_pipeline: the deterministic input pipeline (the one evaluation uses).
        device: where the model is.
        context: a single-process :class:`DistributedContext`.
    """

    state: dict[str, Any]
    config: Config
    data: RunData
    model: nn.Module
    test_pipeline: Compose
    device: torch.device
    context: DistributedContext

    @property
    def train_counts(self) -> np.ndarray:
        """``(K,)`` training samples per class, as saved in the checkpoint (the Many/Medium/Few
        groups of the run), else counted in the training split."""
        return np.asarray(self.state.get("train_counts", self.data.train_counts))

    def split(self, name: str) -> SkeletonSplit:
        """The run's ``test``, ``val`` (when configured) or ``train`` split."""
        split = {"test": self.data.test, "val": self.data.val, "train": self.data.train}.get(name)
        if split is None:
            raise ValueError(f"split {name!r} is not available (test, train, or a configured val)")
        return split

    def prepare(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Raw batch ``(N, C, T, V, M)`` and its ``(N,)`` lengths -> model input on ``device``."""
        return self.test_pipeline(x.to(self.device), lengths.to(self.device))[0]


def open_trained_run(checkpoint: str | Path, overrides: Sequence[str] = (), device: str = "auto") -> TrainedRun:
    """Rebuild a training checkpoint's run: its config (``overrides`` may change e.g.
    ``data.path`` when the dataset moved), data, test pipeline and model with the saved weights."""
    state = load_checkpoint(checkpoint)
    raw = apply_overrides(state["config"], overrides)
    config = build_config(raw, f"{checkpoint} with overrides {list(overrides)}")
    context = DistributedContext()
    data = open_run_data(config, context)
    torch_device = resolve_device(device)
    model = build_run_model(config, data.dataset).to(torch_device)
    model.load_state_dict(state["model"])
    _, test_pipeline = build_pipelines(config, data.dataset)
    return TrainedRun(state, config, data, model, test_pipeline, torch_device, context)
