"""A steady-state training step never waits for the host.

Each test runs a few training steps the way ``Trainer._train_epoch`` does (train pipeline with a
generator on the batch's device, ``method.before_step``, ``method.training_loss``, backward,
optimiser step, the device-side loss accumulator) for CE, Balanced Softmax, the mixing methods
and Shap-Mix with both Shapley estimators and every guidance, the other methods, and InfoGCN's
own objective, through the warm-up epoch into the guided one.  The first step of each epoch may
set things up (generators made on the device, the constant tables a phase needs copied there
once); the steps after it are checked:

* on a GPU, under ``torch.cuda.set_sync_debug_mode("error")``, which raises on every
  synchronising CUDA call (device-to-host reads, and blocking host-to-device copies);
* on the CPU, under :class:`HostReadGuard`, which raises on every operation that would read a
  device tensor back to the host (``.item()``, ``bool(tensor)``, ``int(tensor)``,
  ``.tolist()``, ``.cpu()``, ``.numpy()``, ``nonzero``, boolean-mask indexing, ``unique``,
  ``multinomial``'s validation, ...), so the suite fails on a CPU-only machine too when someone
  adds one to the step.  It cannot see a blocking host-to-device copy (on a CPU there is none);
  only the GPU test catches those.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from shapmix.config import MethodConfig
from shapmix.data.transforms import build_pipeline
from shapmix.methods import TrainingNetwork, build_method
from shapmix.losses import BalancedSoftmax, CrossEntropy
from shapmix.mixing import mean_sequence
from shapmix.models import build_model
from shapmix.skeleton.layouts import get_layout

LAYOUT = get_layout("ntu25")
CLASS_COUNTS = np.array([40, 20, 10, 5, 3, 2])
BATCH = 16  # the exact estimator's row credit (2 * 16 / 32 = 1) buys a row every step
RAW_FRAMES, WINDOW, PERSONS = 24, 16, 2
STEPS_PER_EPOCH = 3
WARMUP_EPOCHS = 1
EPOCHS = 2  # the warm-up epoch (random mixing, naive estimates), then a guided one

SHAPMIX_OPTIONS = dict(name="shapmix", warmup_epochs=WARMUP_EPOCHS, interval=1)
METHODS = {
    "ce": (dict(name="none"), "ce"),
    "balanced_softmax": (dict(name="none"), "balanced_softmax"),
    "mixup": (dict(name="mixup"), "balanced_softmax"),
    "cutmix": (dict(name="cutmix", mixup_alpha=1.0), "balanced_softmax"),
    "remix": (dict(name="remix"), "balanced_softmax"),
    "stmix": (dict(name="stmix"), "balanced_softmax"),
    "stmix_per_batch": (dict(name="stmix", draw="per_batch", partner="cycle", donor_resize="nearest"), "balanced_softmax"),
    "shapmix_exact_shapley": (dict(SHAPMIX_OPTIONS, shapley_estimator="exact"), "balanced_softmax"),
    "shapmix_sampled_shapley": (
        dict(SHAPMIX_OPTIONS, shapley_estimator="sampled", estimate_fraction=0.5), "balanced_softmax"
    ),
    "shapmix_exact_random": (dict(SHAPMIX_OPTIONS, shapley_estimator="exact", guidance="random"), "balanced_softmax"),
    "shapmix_sampled_random": (dict(SHAPMIX_OPTIONS, shapley_estimator="sampled", guidance="random"), "balanced_softmax"),
    "shapmix_gradcam": (dict(SHAPMIX_OPTIONS, guidance="gradcam"), "balanced_softmax"),
    "shapmix_per_batch": (dict(SHAPMIX_OPTIONS, draw="per_batch", mixup_alpha=0.5), "ce"),
    "skelemix": (dict(name="skelemix", skelemix_fraction=0.25), "balanced_softmax"),
    "skelemixclr": (dict(name="skelemixclr"), "balanced_softmax"),
    "skelemixclr_per_sample": (dict(name="skelemixclr", skelemixclr_draw="per_sample", partner="cycle"), "ce"),
    "paco": (dict(name="paco"), "ce"),  # its own loss: the criterion is not used
    "bcl": (dict(name="bcl"), "ce"),
    # every augmentation on, a quarter of the batch mixed, the action-aware weights in the second epoch
    "brl": (dict(name="brl", brl_mix_fraction=0.25, brl_p_reverse=0.5, brl_reweight_epoch=1), "ce"),
    # the other backbones; InfoGCN's own objective with hard labels and with mixed targets
    "stgcnpp_stmix": (dict(name="stmix"), "balanced_softmax"),
    "agcn_stmix": (dict(name="stmix"), "balanced_softmax"),
    "hdgcn_stmix": (dict(name="stmix"), "balanced_softmax"),
    "infogcn_ce": (dict(name="none"), "ce"),
    "infogcn_shapmix": (dict(SHAPMIX_OPTIONS, shapley_estimator="exact"), "balanced_softmax"),
}
BACKBONES = {name: name.split("_")[0] for name in METHODS if name.startswith(("stgcnpp", "agcn", "hdgcn", "infogcn"))}
"""The backbone of each case; the others train CTR-GCN."""


# --------------------------------------------------------------------------- the CPU guard


class HostReadGuard(TorchDispatchMode):
    """Raise on every ATen operation that reads tensor data back to the host or whose output
    shape depends on tensor data (both make a GPU stop and wait for the host).  Python-level
    reads that never reach the dispatcher on a CPU tensor (``.tolist()``, ``.numpy()``,
    ``.cpu()``) are patched by :func:`no_host_reads`."""

    READS: ClassVar[dict[Any, str]] = {
        torch.ops.aten._local_scalar_dense.default: "reads a value back to the host (.item(), bool(), int(), float())",
        torch.ops.aten.nonzero.default: "nonzero: an output size that depends on the data",
        torch.ops.aten.masked_select.default: "masked_select: an output size that depends on the data",
        torch.ops.aten._unique2.default: "unique: an output size that depends on the data",
        torch.ops.aten.unique_dim.default: "unique: an output size that depends on the data",
        torch.ops.aten.unique_consecutive.default: "unique_consecutive: an output size that depends on the data",
        torch.ops.aten.bincount.default: "bincount: an output size that depends on the data",
        torch.ops.aten.multinomial.default: "multinomial: validates the probabilities on the host",
        torch.ops.aten.equal.default: "equal: returns a Python bool",
    }
    MASK_INDEXING: ClassVar[set[Any]] = {
        torch.ops.aten.index.Tensor,
        torch.ops.aten.index_put.default,
        torch.ops.aten.index_put_.default,
        torch.ops.aten._index_put_impl_.default,
    }

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.READS:
            raise AssertionError(f"host read in the training step: {func} {self.READS[func]}")
        if func == torch.ops.aten.repeat_interleave.Tensor and kwargs.get("output_size") is None:
            raise AssertionError("host read in the training step: repeat_interleave by a tensor without output_size")
        if func in self.MASK_INDEXING:
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            if any(index is not None and index.dtype in (torch.bool, torch.uint8) for index in indices):
                raise AssertionError(f"host read in the training step: {func} with a boolean mask")
        return func(*args, **kwargs)


def _refuse(name: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"host read in the training step: Tensor.{name}()")

    return refuse


@contextmanager
def no_host_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Inside the block, every host read of tensor data raises (see :class:`HostReadGuard`)."""
    with monkeypatch.context() as patch, HostReadGuard():
        for name in ("item", "tolist", "cpu", "numpy", "__array__"):
            patch.setattr(torch.Tensor, name, _refuse(name))
        yield


# --------------------------------------------------------------------------- the steps


class TrainingSteps:
    """A tiny backbone (CTR-GCN unless :data:`BACKBONES` says otherwise), a method and its loss,
    trained step by step as the trainer does."""

    def __init__(self, method_name: str, device: torch.device, seed: int = 0) -> None:
        options, loss_name = METHODS[method_name]
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        num_classes = len(CLASS_COUNTS)
        self.device = device
        self.x = torch.randn(BATCH, 3, RAW_FRAMES, LAYOUT.num_joints, PERSONS, generator=generator).to(device)
        self.lengths = torch.randint(WINDOW, RAW_FRAMES + 1, (BATCH,), generator=generator).to(device)
        self.y = torch.randint(num_classes, (BATCH,), generator=generator).to(device)
        backbone = BACKBONES.get(method_name, "ctrgcn")
        self.model = build_model(backbone, num_classes, LAYOUT, PERSONS, base_channels=8, num_blocks=3).to(device)
        self.pipeline = build_pipeline(LAYOUT, train=True, window=WINDOW, min_crop_frames=WINDOW)
        self.augment = torch.Generator(device=device).manual_seed(seed)
        baseline = mean_sequence(build_pipeline(LAYOUT, train=False, window=WINDOW)(self.x, self.lengths)[0])
        self.method = build_method(
            MethodConfig(**options), num_classes, CLASS_COUNTS, LAYOUT, seed, baseline=baseline, model=self.model,
            train_pipeline=self.pipeline,
        )
        self.criterion = (CrossEntropy() if loss_name == "ce" else BalancedSoftmax(CLASS_COUNTS)).to(device)
        # a method with its own heads trains them with the model, as the trainer does
        self.network = self.model if self.method.heads is None else TrainingNetwork(self.model, self.method.heads)
        self.optimizer = torch.optim.SGD(self.network.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
        self.totals = torch.zeros(3, dtype=torch.float64, device=device)
        self.global_step = 0

    def step(self) -> None:
        epoch = self.global_step // STEPS_PER_EPOCH
        x, _ = self.pipeline(self.x, self.lengths, self.augment)
        self.method.before_step(self.model, x, self.y, epoch, self.global_step)
        loss, logits = self.method.training_loss(self.network, x, self.y, self.criterion, epoch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.totals[0] += loss.detach().double() * len(self.y)
            self.totals[1] += (logits.argmax(1) == self.y).sum()
            self.totals[2] += len(self.y)
        self.global_step += 1


def _run(steps: TrainingSteps, guard) -> None:
    """Every epoch: one step that may set up its phase, then the steady-state steps under ``guard``."""
    for _ in range(EPOCHS):
        steps.step()
        with guard():
            for _ in range(STEPS_PER_EPOCH - 1):
                steps.step()


@pytest.mark.parametrize("method_name", sorted(METHODS))
def test_cpu_steps_read_nothing_back_to_the_host(method_name, monkeypatch):
    steps = TrainingSteps(method_name, torch.device("cpu"))
    _run(steps, lambda: no_host_reads(monkeypatch))
    assert torch.isfinite(steps.totals).all() and steps.totals[2] == BATCH * EPOCHS * STEPS_PER_EPOCH


def test_the_cpu_guard_catches_host_reads(monkeypatch):
    x = torch.arange(6.0)
    catches = {
        "item": lambda: x.sum().item(),
        "bool": lambda: bool(x.sum() > 0),
        "int": lambda: int(x[2]),
        "tolist": lambda: x.tolist(),
        "cpu": lambda: x.cpu(),
        "numpy": lambda: np.asarray(x),
        "nonzero": lambda: torch.nonzero(x > 2),
        "mask": lambda: x[x > 2],
        "mask assignment": lambda: x.clone().__setitem__(x > 2, 0.0),
        "unique": lambda: torch.unique(x),
        "multinomial": lambda: torch.multinomial(x + 1, 1),
        "repeat_interleave": lambda: x.repeat_interleave(torch.ones(6, dtype=torch.long)),
    }
    for name, read in catches.items():
        with no_host_reads(monkeypatch), pytest.raises(AssertionError, match="host read"):
            read()
            pytest.fail(f"{name} was not caught")
    with no_host_reads(monkeypatch):  # what a step may do: fixed shapes, values stay tensors
        kept = torch.where(x > 2, x, 0.0)
        picked = x[torch.tensor([1, 2])]
        anything = (x > 2).any()
    assert kept.shape == (6,) and picked.shape == (2,) and anything.shape == ()


@pytest.fixture
def cuda_device(request) -> torch.device:
    """The GPU to check: the suite's ``device`` fixture where ``tests/conftest.py`` provides one
    (``--device cuda``), else ``cuda``; skipped with the reason when that is not a usable GPU."""
    try:
        device = torch.device(request.getfixturevalue("device"))
    except pytest.FixtureLookupError:
        device = torch.device("cuda")
    if device.type != "cuda":
        pytest.skip(f"set_sync_debug_mode checks CUDA only; this run's device is {device}")
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available: the synchronisation check needs a GPU")
    return device


@pytest.mark.parametrize("method_name", sorted(METHODS))
def test_gpu_steps_never_synchronise(method_name, cuda_device):
    steps = TrainingSteps(method_name, cuda_device)

    @contextmanager
    def sync_errors() -> Iterator[None]:
        with ExitStack() as stack:
            torch.cuda.synchronize(cuda_device)
            torch.cuda.set_sync_debug_mode("error")
            stack.callback(torch.cuda.set_sync_debug_mode, "default")
            yield

    _run(steps, sync_errors)
    assert torch.isfinite(steps.totals).all() and steps.totals[2] == BATCH * EPOCHS * STEPS_PER_EPOCH
