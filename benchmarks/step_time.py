"""Time one training step of plain, ST-Mix and Shap-Mix training, interleaved on one model and batch.

Variants (each one optimisation step of the same model, optimiser, loss and random batch, run
through the same :mod:`shapmix.engine.methods` objects the trainer uses, step by step as
:meth:`shapmix.engine.trainer.Trainer._train_epoch` does):

* ``none``: plain step on the batch ``x`` (size N);
* ``double``: plain step on ``cat([x, x])`` with one-hot targets on the second half: the cost
  floor of any method that trains on clean + mixed data;
* ``stmix``: ST-Mix mixing, then a step on ``cat([x, x_mix])`` with the soft-target loss;
* ``shapmix_iter1``: Shap-Mix at every step: per-sample Monte-Carlo Shapley estimation (one
  no-grad eval-mode forward of the ``2N`` masked copies), table update, tail-aware mixing from
  the table, then the double step;
* ``shapmix_iter5``: Shap-Mix estimating every 5th step: 5 consecutive steps (one with
  estimation) timed together and divided by 5.

Every round runs one step of every variant, in an order rotated each round, after warm-up
rounds; the median over rounds is reported per variant, with a breakdown into the estimation
(``before_step``), mixing and optimisation phases.  Phases are separated by a device
synchronisation (free on the CPU; on a GPU it forgoes a little CPU/GPU overlap).  The loss is the
library's Balanced Softmax with long-tailed class counts (LT-NTU60, imbalance 100).

Usage::

    python benchmarks/step_time.py                      # CTR-GCN full width, batch 16, 64 frames
    python benchmarks/step_time.py --json               # one JSON object on stdout
    python benchmarks/step_time.py --batch-size 64 --device cuda   # NTU-size batch on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from shapmix.config import MethodConfig
from shapmix.data.longtail import longtail_counts
from shapmix.engine.distributed import resolve_device
from shapmix.engine.methods import TrainingMethod, build_method
from shapmix.losses import BalancedSoftmax
from shapmix.mixing import mean_sequence
from shapmix.models import build_model
from shapmix.skeleton.layouts import get_layout

LAYOUT = "ntu25"
NUM_PERSONS = 2
IN_CHANNELS = 3
NUM_CLASSES = 60
LT_MAX_PER_CLASS = 600
LT_IMBALANCE = 100
DEFAULT_BATCH = 16
DEFAULT_FRAMES = 64
DEFAULT_ROUNDS = 5
DEFAULT_WARMUP_ROUNDS = 1
DEFAULT_BASE_CHANNELS = 64
DEFAULT_BLOCKS = 10
SPARSE_INTERVAL = 5
"""Estimation interval of the ``shapmix_iter5`` variant."""
LEARNING_RATE = 0.01
"""Small enough that random data cannot make the weights diverge over the run."""
MOMENTUM = 0.9
WEIGHT_DECAY = 4e-4
EPOCH = 0
"""Every step is timed as if in epoch 0; the Shap-Mix variants have no warm-up epochs."""
SEED = 0
PHASES = ("estimate", "mix", "train")
VARIANTS = ("none", "double", "stmix", "shapmix_iter1", "shapmix_iter5")
RATIOS = {
    "double_over_none": ("double", "none"),
    "stmix_over_double": ("stmix", "double"),
    "shapmix_iter1_over_stmix": ("shapmix_iter1", "stmix"),
    "shapmix_iter5_over_stmix": ("shapmix_iter5", "stmix"),
}
TARGETS = {"stmix_over_double": 1.03, "shapmix_iter1_over_stmix": 1.10, "shapmix_iter5_over_stmix": 1.03}
"""Targets on the 2-core CPU of the project (issue 3, section 8)."""
MS_PER_S = 1e3


class DoubleMethod(TrainingMethod):
    """Trains on ``cat([x, x])`` (the second half with one-hot soft targets): no mixing cost."""

    name = "double"

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def mix(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return x, F.one_hot(y, self.num_classes).to(x.dtype)


@dataclass
class Bench:
    """The shared model, optimiser, loss and batch."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    device: torch.device

    def clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def step(self, method: TrainingMethod, global_step: int) -> dict[str, float]:
        """One training step exactly as the trainer runs it; seconds per phase."""
        x, y = self.x, self.y
        start = self.clock()
        method.before_step(self.model, x, y, EPOCH, global_step)
        estimated = self.clock()
        mixed = method.mix(x, y, EPOCH)
        mixed_at = self.clock()
        if mixed is None:
            loss = self.criterion(self.model(x), y)
        else:
            x_mixed, soft_targets = mixed
            all_logits = self.model(torch.cat([x, x_mixed]))
            loss = self.criterion(all_logits[: len(x)], y) + self.criterion(all_logits[len(x):], soft_targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        done = self.clock()
        return {"estimate": estimated - start, "mix": mixed_at - estimated, "train": done - mixed_at}


def build_variants(args: argparse.Namespace, device: torch.device) -> dict[str, Callable[[int], dict[str, float]]]:
    """Per variant, a function ``round -> seconds per phase of one step`` on the shared setup."""
    torch.manual_seed(SEED)
    layout = get_layout(LAYOUT)
    model = build_model(
        "ctrgcn",
        num_classes=NUM_CLASSES,
        layout=layout,
        num_persons=NUM_PERSONS,
        in_channels=IN_CHANNELS,
        base_channels=args.base_channels,
        num_blocks=args.num_blocks,
    ).to(device)
    model.train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY
    )
    counts = longtail_counts(NUM_CLASSES, LT_MAX_PER_CLASS, LT_IMBALANCE)
    criterion = BalancedSoftmax(counts).to(device)
    x = torch.randn(args.batch_size, IN_CHANNELS, args.frames, layout.num_joints, NUM_PERSONS, device=device)
    y = torch.randint(NUM_CLASSES, (args.batch_size,), device=device)
    bench = Bench(model, optimizer, criterion, x, y, device)
    baseline = mean_sequence(x)

    def method(name: str, **options) -> TrainingMethod:
        config = MethodConfig(name=name, warmup_epochs=0, **options)
        return build_method(config, NUM_CLASSES, counts, layout, SEED, baseline=baseline)

    plain, double, stmix = TrainingMethod(), DoubleMethod(NUM_CLASSES), method("stmix")
    estimation = {} if args.estimate_fraction is None else {"estimate_fraction": args.estimate_fraction}
    iter1 = method("shapmix", interval=1, **estimation)
    iter5 = method("shapmix", interval=SPARSE_INTERVAL, **estimation)

    def sparse(round_index: int) -> dict[str, float]:
        steps = [bench.step(iter5, round_index * SPARSE_INTERVAL + k) for k in range(SPARSE_INTERVAL)]
        return {phase: sum(s[phase] for s in steps) / SPARSE_INTERVAL for phase in PHASES}

    variants = {
        "none": lambda r: bench.step(plain, r),
        "double": lambda r: bench.step(double, r),
        "stmix": lambda r: bench.step(stmix, r),
        "shapmix_iter1": lambda r: bench.step(iter1, r),
        "shapmix_iter5": sparse,
    }
    return variants


def run(args: argparse.Namespace) -> dict:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    load_before = os.getloadavg()
    variants = build_variants(args, device)
    times: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    for round_index in range(args.warmup_rounds + args.rounds):
        shift = round_index % len(VARIANTS)
        for name in VARIANTS[shift:] + VARIANTS[:shift]:
            phases = variants[name](round_index)
            if round_index >= args.warmup_rounds:
                times[name].append(phases)
        if not args.json:
            print(f"round {round_index + 1}/{args.warmup_rounds + args.rounds}"
                  f"{' (warm-up)' if round_index < args.warmup_rounds else ''} done", flush=True)

    totals = {name: [sum(p.values()) for p in runs] for name, runs in times.items()}
    ms = {name: MS_PER_S * statistics.median(seconds) for name, seconds in totals.items()}
    spread = {name: [MS_PER_S * min(seconds), MS_PER_S * max(seconds)] for name, seconds in totals.items()}
    phases_ms = {
        name: {phase: MS_PER_S * statistics.median(p[phase] for p in runs) for phase in PHASES}
        for name, runs in times.items()
    }
    result = {ratio: ms[top] / ms[bottom] for ratio, (top, bottom) in RATIOS.items()}
    # the same ratios from the variants' steps within each round, less sensitive to load drift
    paired = {
        ratio: statistics.median(a / b for a, b in zip(totals[top], totals[bottom]))
        for ratio, (top, bottom) in RATIOS.items()
    }
    result.update(
        paired_ratios=paired,
        ms=ms,
        min_max_ms=spread,
        phases_ms=phases_ms,
        targets=TARGETS,
        settings={
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
            "batch_size": args.batch_size,
            "frames": args.frames,
            "persons": NUM_PERSONS,
            "base_channels": args.base_channels,
            "num_blocks": args.num_blocks,
            "num_classes": NUM_CLASSES,
            "estimate_fraction": (
                MethodConfig().estimate_fraction if args.estimate_fraction is None else args.estimate_fraction
            ),
            "rounds": args.rounds,
            "warmup_rounds": args.warmup_rounds,
            "torch": torch.__version__,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
    )
    return result


def print_report(result: dict) -> None:
    settings = result["settings"]
    print(
        f"CTR-GCN base {settings['base_channels']} x {settings['num_blocks']} blocks, batch {settings['batch_size']}, "
        f"{settings['frames']} frames, {settings['persons']} persons on {settings['device_name']} "
        f"({settings['threads']} threads), median of {settings['rounds']} rounds, "
        f"Shap-Mix estimate_fraction {settings['estimate_fraction']}"
    )
    print(f"{'variant':<15}{'median ms':>11}{'min':>9}{'max':>9}{'estimate':>10}{'mix':>8}{'train':>9}")
    for name in VARIANTS:
        low, high = result["min_max_ms"][name]
        phases = result["phases_ms"][name]
        print(f"{name:<15}{result['ms'][name]:>11.1f}{low:>9.1f}{high:>9.1f}"
              + "".join(f"{phases[phase]:>{width}.1f}" for phase, width in zip(PHASES, (10, 8, 9))))
    for ratio in RATIOS:
        target = result["targets"].get(ratio)
        verdict = "" if target is None else f"  (target <= {target:.2f}: {'met' if result[ratio] <= target else 'MISSED'})"
        print(f"{ratio:<26}{result[ratio]:.3f} (per-round median {result['paired_ratios'][ratio]:.3f}){verdict}")
    before, after = settings["load_average_before"], settings["load_average_after"]
    print(f"load average before {before[0]:.2f} / after {after[0]:.2f} (1 min)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="clean samples per step (N)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="timed rounds (median reported)")
    parser.add_argument("--warmup-rounds", type=int, default=DEFAULT_WARMUP_ROUNDS)
    parser.add_argument("--base-channels", type=int, default=DEFAULT_BASE_CHANNELS, help="CTR-GCN width")
    parser.add_argument("--num-blocks", type=int, default=DEFAULT_BLOCKS, help="CTR-GCN depth")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--estimate-fraction", type=float, default=None,
        help="Shap-Mix method.estimate_fraction (default: the library default; 1 = every sample)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if min(args.batch_size, args.frames, args.rounds) < 1 or args.warmup_rounds < 0:
        parser.error("batch size, frames and rounds must be positive, warm-up rounds non-negative")
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)


if __name__ == "__main__":
    main()
