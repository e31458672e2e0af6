"""Training-step time and peak memory of every registered backbone, optionally next to its original code.

For each backbone of :func:`shapmix.models.available_models` (or ``--models``), one training step
is: forward of a random batch, cross entropy on random labels, backward and an SGD step (momentum
0.9).  The step runs ``--warmup`` times untimed, then ``--repeats`` times timed; the median is
reported.  Defaults: full width, batch 16, 64 frames, NTU-25 joints, 2 persons, 3 channels,
60 classes.

Peak memory is what the steps add on top of the built model and batch:

* CPU: growth of the process's peak resident set size (``resource.getrusage(...).ru_maxrss``)
  from just before the first step to after the last (gradients, optimiser state, activations).
  ``tracemalloc`` does not see torch's allocations, so every measurement runs in a fresh Python
  subprocess of this script (``--worker``).  Memory is measured in its own subprocess (two
  steps) with glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed at 64 KiB: every tensor then gets its own
  mapping, returned when it is freed, so the peak RSS follows the memory in use (with glibc's
  adaptive threshold it also counts heap fragmentation, which varies by hundreds of MiB with
  the number of steps).  That setting slows allocation down, so the timed steps run apart from
  it, in another subprocess;
* CUDA: ``torch.cuda.max_memory_allocated()`` over the steps minus the memory allocated before.

``--original-dir NAME=PATH`` (repeatable) also builds backbone ``NAME`` from a checkout of its
original code at ``PATH`` (never part of this repository) and measures it on the same batch in
the same run; the table then shows both and the ratios ours / original (below 1: ours is faster
or smaller).  Supported originals (:data:`ORIGINALS`): ``ctrgcn`` (Uason-Chen/CTR-GCN),
``stgcnpp`` (kennymckormick/pyskl; its ``STGCN`` backbone is imported without mmcv, which is
replaced by three tiny stand-ins, and followed by ``GCNHead``'s pooling and linear layer),
``agcn`` (lshiwjx/2s-AGCN), ``infogcn`` (stnoah1/infogcn; needs ``einops``, its output's logits
are trained with cross entropy like ours) and ``hdgcn`` (Jho-Yonsei/HD-GCN, needs ``einops``;
its ``x.get_device()`` is made to return the device itself, so that it runs on the CPU).
2s-AGCN's and CTR-GCN's fixed graphs' ``.cuda(x.get_device())`` is made a no-op for CPU tensors.  ``--rounds R`` alternates
ours and the original R times and reports the median of the rounds.

Timings on a shared machine are noisy; compare within one run.

Usage::

    python benchmarks/backbones.py                                    # every backbone, CPU
    python benchmarks/backbones.py --models agcn --original-dir agcn=/tmp/2s-AGCN --rounds 3
    python benchmarks/backbones.py --device cuda --json
    python benchmarks/backbones.py --models stgcnpp --model-arg base_channels=16 --repeats 1
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

import shapmix
from shapmix.models import available_models, build_model

LAYOUT = "ntu25"
NUM_JOINTS = 25
NUM_PERSONS = 2
IN_CHANNELS = 3
NUM_CLASSES = 60
DEFAULT_BATCH = 16
DEFAULT_FRAMES = 64
DEFAULT_REPEATS = 5
DEFAULT_WARMUP = 2
LEARNING_RATE = 0.01
"""Small enough that random data cannot make the weights diverge over the steps."""
MOMENTUM = 0.9
KIB = 1024
"""``ru_maxrss`` is in KiB on Linux."""
MEMORY_STEPS = (1, 1)
"""Warm-up and measured steps of a CPU memory measurement (the second step runs with the
gradients and momentum buffers of the first in place)."""
FIXED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": str(64 * KIB)}
"""glibc setting for CPU memory measurements (module docstring)."""


# --------------------------------------------------------------------------- original code


class _PysklGCNHead(nn.Module):
    """pyskl ``GCNHead`` (dropout 0): average over (T, V) per person, then over persons, then a
    linear layer; ``(N, M, C, T, V)`` -> ``(N, K)``."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc_cls = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_cls(x.mean(dim=(3, 4)).mean(dim=1))


def _build_pyskl_stgcnpp(checkout: Path) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """pyskl's ST-GCN++ (``configs/stgcn++/stgcn++_ntu60_xsub_3dkp/j.py``) from ``checkout``.

    pyskl's package ``__init__`` files import mmcv and half the library; here the packages are
    empty stand-ins whose ``__path__`` points into the checkout, so only ``utils/graph.py`` and
    ``models/gcns/{stgcn,utils/gcn,utils/tcn,utils/init_func}.py`` run, with mmcv's
    ``build_norm_layer`` (BN), ``build_activation_layer`` (ReLU) and ``load_checkpoint`` (unused)
    stood in for.
    """

    def module(name: str, folder: str | None = None, **attributes) -> types.ModuleType:
        stand_in = types.ModuleType(name)
        if folder is not None:
            stand_in.__path__ = [str(checkout / folder)]
        stand_in.__dict__.update(attributes)
        sys.modules[name] = stand_in
        return stand_in

    def unused(*args, **kwargs):
        raise RuntimeError("not needed to build the model")

    class Registry:
        def register_module(self):
            return lambda cls: cls

    module("mmcv")
    module("mmcv.cnn", build_norm_layer=lambda cfg, channels: ("bn", nn.BatchNorm2d(channels)),
           build_activation_layer=lambda cfg: nn.ReLU())
    module("mmcv.runner", load_checkpoint=unused)
    module("pyskl", "pyskl")
    utils = module("pyskl.utils", "pyskl/utils", cache_checkpoint=unused)
    module("pyskl.models", "pyskl/models")
    module("pyskl.models.builder", BACKBONES=Registry())
    module("pyskl.models.gcns", "pyskl/models/gcns")
    gcn_utils = module("pyskl.models.gcns.utils", "pyskl/models/gcns/utils")
    utils.Graph = __import__("pyskl.utils.graph", fromlist=["Graph"]).Graph
    for name, source in (("unit_gcn", "gcn"), ("unit_tcn", "tcn"), ("mstcn", "tcn")):
        setattr(gcn_utils, name, getattr(__import__(f"pyskl.models.gcns.utils.{source}", fromlist=[name]), name))
    from pyskl.models.gcns.stgcn import STGCN

    backbone = STGCN(graph_cfg=dict(layout="nturgb+d", mode="spatial"), gcn_adaptive="init",
                     gcn_with_res=True, tcn_type="mstcn")
    model = nn.Sequential(backbone, _PysklGCNHead(backbone.gcn[-1].tcn.out_channels, NUM_CLASSES))
    return model, lambda x: x.permute(0, 4, 2, 3, 1).contiguous()  # ours (N C T V M) -> pyskl's N M T V C


def _allow_cpu_graphs(checkout: Path) -> None:
    """Put ``checkout`` first on ``sys.path`` (its ``model`` and ``graph`` packages) and make
    ``Tensor.cuda(-1)`` a no-op: 2s-AGCN and CTR-GCN move their fixed graphs with
    ``.cuda(x.get_device())``, which is -1 for a CPU input."""
    sys.path.insert(0, str(checkout))
    to_cuda = torch.Tensor.cuda

    def cuda_unless_cpu(tensor, device=None, *args, **kwargs):
        return tensor if device == -1 else to_cuda(tensor, device, *args, **kwargs)

    torch.Tensor.cuda = cuda_unless_cpu


def _build_2s_agcn(checkout: Path) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """2s-AGCN's joint-stream ``model.agcn.Model`` (``config/nturgbd-cross-subject/train_joint.yaml``)."""
    _allow_cpu_graphs(checkout)
    from model.agcn import Model

    model = Model(num_class=NUM_CLASSES, num_point=NUM_JOINTS, num_person=NUM_PERSONS,
                  graph="graph.ntu_rgb_d.Graph", graph_args={"labeling_mode": "spatial"})
    return model, lambda x: x


def _ctr_gcn(checkout: Path) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """CTR-GCN's ``model.ctrgcn.Model`` (``config/nturgbd-cross-subject/default.yaml``)."""
    _allow_cpu_graphs(checkout)
    from model.ctrgcn import Model

    model = Model(num_class=NUM_CLASSES, num_point=NUM_JOINTS, num_person=NUM_PERSONS,
                  graph="graph.ntu_rgb_d.Graph", graph_args={"labeling_mode": "spatial"})
    return model, lambda x: x


class _FirstOutput(nn.Module):
    """The logits of a model that returns ``(logits, latent)`` (InfoGCN)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


def _infogcn(checkout: Path) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """InfoGCN's ``model.infogcn.InfoGCN`` as its README trains it on NTU (``--k 1``, 3 heads,
    noise ratio 0.5, prior gain 3); the step's loss is cross entropy on the logits, as ours."""
    _allow_cpu_graphs(checkout)
    from model.infogcn import InfoGCN

    model = InfoGCN(num_class=NUM_CLASSES, num_point=NUM_JOINTS, num_person=NUM_PERSONS,
                    graph="graph.ntu_rgb_d.Graph", k=1, num_head=3, noise_ratio=0.5, gain=3)
    model.A_vector = model.A_vector.float()  # a float64 plain attribute there; float32 input here
    return _FirstOutput(model), lambda x: x


def _hd_gcn(checkout: Path) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """HD-GCN's ``model.HDGCN.Model`` (``config/nturgbd-cross-subject/joint_com_21.yaml``).

    The checkout's ``graph/__init__.py`` imports two modules the repository does not have
    (``ntu_rgb_d``, ``ucla_hierarchy``), so ``graph`` is an empty package over the checkout's
    folder and only the modules the model uses are imported."""
    _allow_cpu_graphs(checkout)
    graph = types.ModuleType("graph")
    graph.__path__ = [str(checkout / "graph")]
    sys.modules["graph"] = graph
    importlib.import_module("graph.ntu_rgb_d_hierarchy")  # the original looks it up as an attribute
    # its EdgeConv makes index tensors on `x.get_device()`, which is -1 (not a device) for a CPU input
    torch.Tensor.get_device = lambda tensor: tensor.device
    from model.HDGCN import Model

    model = Model(num_class=NUM_CLASSES, num_point=NUM_JOINTS, num_person=NUM_PERSONS,
                  graph="graph.ntu_rgb_d_hierarchy.Graph", graph_args={"labeling_mode": "spatial", "CoM": 21})
    return model, lambda x: x


ORIGINALS: dict[str, Callable[[Path], tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]]] = {
    "ctrgcn": _ctr_gcn,
    "stgcnpp": _build_pyskl_stgcnpp,
    "agcn": _build_2s_agcn,
    "infogcn": _infogcn,
    "hdgcn": _hd_gcn,
}
"""Backbone name -> builder of its original model from a checkout: ``(model, input converter)``;
the converter maps our ``(N, C, T, V, M)`` batch to the original's input layout."""


# --------------------------------------------------------------------------- one measurement


def measure(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, warmup: int, repeats: int, device: torch.device
) -> dict[str, float]:
    """Median step time (ms) and peak memory growth (MiB) of ``warmup + repeats`` SGD steps."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    on_cuda = device.type == "cuda"

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if on_cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB
    times = []
    for index in range(warmup + repeats):
        started = time.perf_counter()
        step()
        if on_cuda:
            torch.cuda.synchronize(device)
        if index >= warmup:
            times.append(time.perf_counter() - started)
    if on_cuda:
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB - before
    return {"step_ms": 1000 * statistics.median(times), "peak_mib": peak / 2**20}


def worker(args: argparse.Namespace) -> dict:
    """Build one model (ours, or the original from ``--original-dir``) and measure it."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, IN_CHANNELS, args.frames, NUM_JOINTS, NUM_PERSONS)
    y = torch.randint(0, NUM_CLASSES, (args.batch_size,))
    if args.worker == "ours":
        model = build_model(args.models, NUM_CLASSES, LAYOUT, NUM_PERSONS, IN_CHANNELS, **_model_args(args))
    else:
        model, convert = ORIGINALS[args.models](Path(args.worker))
        x = convert(x)
    model = model.to(device).train()
    result = measure(model, x.to(device), y.to(device), args.warmup, args.repeats, device)
    return {**result, "parameters": sum(p.numel() for p in model.parameters())}


# --------------------------------------------------------------------------- driver


def _model_args(args: argparse.Namespace) -> dict:
    pairs = (item.split("=", 1) for item in args.model_arg)
    return {key: yaml.safe_load(value) for key, value in pairs}


def _originals(args: argparse.Namespace) -> dict[str, Path]:
    originals = {}
    for item in args.original_dir:
        name, _, path = item.partition("=")
        if name not in ORIGINALS:
            raise SystemExit(f"--original-dir {item!r}: no original builder for {name!r}; known: {sorted(ORIGINALS)}")
        if not Path(path).is_dir():
            raise SystemExit(f"--original-dir {item!r}: {path!r} is not a directory")
        originals[name] = Path(path).resolve()
    if originals and args.model_arg:
        raise SystemExit("--model-arg changes our models only; compare with the originals at full width")
    return originals


def _run_worker(args: argparse.Namespace, model: str, implementation: str) -> dict:
    """One measurement in fresh Python processes (so a peak RSS is the process's own): step time
    and, on CUDA, memory in one; on the CPU, memory in a second one (module docstring)."""

    def measure_in_subprocess(warmup: int, repeats: int, extra_env: dict[str, str]) -> dict:
        command = [
            sys.executable, __file__, "--worker", implementation, "--models", model,
            "--batch-size", str(args.batch_size), "--frames", str(args.frames), "--repeats", str(repeats),
            "--warmup", str(warmup), "--device", args.device,
            *(["--threads", str(args.threads)] if args.threads is not None else []),
            *(arg for item in args.model_arg for arg in ("--model-arg", item)),
        ]
        package_root = str(Path(shapmix.__file__).resolve().parents[1])  # the shapmix this process imported
        python_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": python_path, **extra_env}
        completed = subprocess.run(command, capture_output=True, text=True, env=env)
        if completed.returncode != 0:
            raise RuntimeError(f"measuring {model} ({implementation}) failed:\n{completed.stderr[-3000:]}")
        return json.loads(completed.stdout.strip().splitlines()[-1])

    result = measure_in_subprocess(args.warmup, args.repeats, {})
    if torch.device(args.device).type == "cpu":
        result["peak_mib"] = measure_in_subprocess(*MEMORY_STEPS, FIXED_MMAP_THRESHOLD)["peak_mib"]
    return result


def run(args: argparse.Namespace) -> dict:
    originals = _originals(args)
    models = args.models.split(",") if args.models else available_models()
    results = {}
    for model in models:
        rounds: dict[str, list[dict]] = {"ours": [], "original": []}
        for _ in range(args.rounds):
            rounds["ours"].append(_run_worker(args, model, "ours"))
            if model in originals:
                rounds["original"].append(_run_worker(args, model, str(originals[model])))
        entry = {}
        for implementation, measured in rounds.items():
            if measured:
                entry[implementation] = {
                    "step_ms": statistics.median(m["step_ms"] for m in measured),
                    "peak_mib": statistics.median(m["peak_mib"] for m in measured),
                    "parameters": measured[0]["parameters"],
                }
        if "original" in entry:
            entry["time_ratio"] = entry["ours"]["step_ms"] / entry["original"]["step_ms"]
            entry["memory_ratio"] = entry["ours"]["peak_mib"] / max(entry["original"]["peak_mib"], 1e-9)
        results[model] = entry
    settings = {
        "batch_size": args.batch_size, "frames": args.frames, "layout": LAYOUT, "persons": NUM_PERSONS,
        "classes": NUM_CLASSES, "device": args.device, "threads": args.threads, "repeats": args.repeats,
        "warmup": args.warmup, "rounds": args.rounds, "model_args": _model_args(args),
    }
    return {"settings": settings, "models": results}


def _print_table(result: dict) -> None:
    s = result["settings"]
    print(f"training step (forward + backward + SGD), batch {s['batch_size']}, {s['frames']} frames, "
          f"{s['layout']}, {s['persons']} persons, {s['device']}, threads {s['threads'] or 'default'}, "
          f"median of {s['repeats']} steps after {s['warmup']} warm-up, {s['rounds']} round(s)")
    print(f"{'model':10} {'params':>10} {'step ms':>9} {'peak MiB':>9} | {'orig params':>11} {'orig ms':>9} "
          f"{'orig MiB':>9} | {'time x':>6} {'mem x':>6}")
    for model, entry in result["models"].items():
        ours = entry["ours"]
        line = f"{model:10} {ours['parameters']:>10,} {ours['step_ms']:>9.1f} {ours['peak_mib']:>9.1f}"
        if "original" in entry:
            original = entry["original"]
            line += (f" | {original['parameters']:>11,} {original['step_ms']:>9.1f} {original['peak_mib']:>9.1f}"
                     f" | {entry['time_ratio']:>6.2f} {entry['memory_ratio']:>6.2f}")
        print(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="", help="comma-separated names (default: every registered backbone)")
    parser.add_argument("--original-dir", action="append", default=[], metavar="NAME=PATH",
                        help="also measure NAME's original code from the checkout at PATH (repeatable)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=1, help="alternate ours / original this many times")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="constructor option of our models, e.g. base_channels=16 (repeatable)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # "ours" or an original's checkout
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args)))
        return
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)


if __name__ == "__main__":
    main()
