"""Time one training step of plain, ST-Mix and Shap-Mix training, interleaved on one model and batch.

Variants (each one optimisation step of the same model, optimiser, loss and random batch, run
through the same :mod:`shapmix.methods` objects the trainer uses, step by step as
:meth:`shapmix.engine.trainer.Trainer._train_epoch` does):

* ``none``: plain step on the batch ``x`` (size N);
* ``double``: plain step on ``cat([x, x])`` with one-hot targets on the second half: the cost
  floor of any method that trains on clean + mixed data;
* ``stmix``: ST-Mix mixing, then a step on ``cat([x, x_mix])`` with the soft-target loss;
* ``shapmix_iter1``: Shap-Mix estimating at every step (no-grad eval-mode forwards of masked
  copies of part of the batch), table update, tail-aware mixing from the table, then the double
  step;
* ``shapmix_iter5``: Shap-Mix estimating every 5th step.

A Shap-Mix variant is timed over one cycle of consecutive steps, after which its work repeats,
and divided by the cycle's length: 1 step (iter-1) or 5 (iter-5) with the sampled estimator;
with the exact estimator (the default) a whole row of ``2**P`` forwards is bought every few
estimation steps, so the cycle runs until the row credit is whole (e.g. 4 estimation steps for
``N = 16`` and ``estimate_fraction`` 0.25).

Every round runs one step of every variant, in an order rotated each round, after warm-up
rounds; the median over rounds is reported per variant, with a breakdown into the estimation
(``before_step``), mixing and optimisation phases.  Phases are separated by a device
synchronisation (free on the CPU; on a GPU it forgoes a little CPU/GPU overlap).  The loss is the
library's Balanced Softmax with long-tailed class counts (LT-NTU60, imbalance 100).

Usage::

    python benchmarks/step_time.py                      # CTR-GCN full width, batch 16, 64 frames
    python benchmarks/step_time.py --json               # one JSON object on stdout
    python benchmarks/step_time.py --batch-size 64 --device cuda   # NTU-size batch on a GPU
    python benchmarks/step_time.py --batch-size 64 --device cuda --cudnn-benchmark   # as the trainer
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from shapmix.config import MethodConfig
from shapmix.data.longtail import longtail_counts
from shapmix.distributed import resolve_device
from shapmix.methods import TrainingMethod, build_method
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
MAX_CYCLE = 1000
"""Longest estimation cycle considered (the exact estimator's row credit is a fraction)."""
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
    estimation = shapmix_options(args)
    cycle = estimation_cycle(MethodConfig(name="shapmix", **estimation), args.batch_size, layout.num_parts)
    iter1 = method("shapmix", interval=1, **estimation)
    iter5 = method("shapmix", interval=SPARSE_INTERVAL, **estimation)

    def timed_cycle(shapmix: TrainingMethod, steps: int) -> Callable[[int], dict[str, float]]:
        def run_cycle(round_index: int) -> dict[str, float]:
            timings = [bench.step(shapmix, round_index * steps + k) for k in range(steps)]
            return {phase: sum(t[phase] for t in timings) / steps for phase in PHASES}

        return run_cycle

    variants = {
        "none": lambda r: bench.step(plain, r),
        "double": lambda r: bench.step(double, r),
        "stmix": lambda r: bench.step(stmix, r),
        "shapmix_iter1": timed_cycle(iter1, cycle),
        "shapmix_iter5": timed_cycle(iter5, cycle * SPARSE_INTERVAL),
    }
    return variants


def shapmix_options(args: argparse.Namespace) -> dict:
    """The Shap-Mix options given on the command line (the library's defaults otherwise)."""
    options: dict = {}
    if args.estimate_fraction is not None:
        options["estimate_fraction"] = args.estimate_fraction
    if args.shapley_estimator is not None:
        options["shapley_estimator"] = args.shapley_estimator
    return options


def estimation_cycle(config: MethodConfig, batch_size: int, num_parts: int) -> int:
    """Estimation steps after which Shap-Mix's estimation work repeats: 1 for the sampled
    estimator; for the exact one, until its row credit (``2 f N / 2**P`` rows per estimation
    step) adds up to whole rows."""
    if config.shapley_estimator != "exact":
        return 1
    rows_per_step = Fraction(2 * config.estimate_fraction * batch_size / 2**num_parts).limit_denominator(MAX_CYCLE)
    return rows_per_step.denominator


def run(args: argparse.Namespace) -> dict:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
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
    shapmix_config = MethodConfig(name="shapmix", **shapmix_options(args))
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
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "batch_size": args.batch_size,
            "frames": args.frames,
            "persons": NUM_PERSONS,
            "base_channels": args.base_channels,
            "num_blocks": args.num_blocks,
            "num_classes": NUM_CLASSES,
            "estimate_fraction": shapmix_config.estimate_fraction,
            "shapley_estimator": shapmix_config.shapley_estimator,
            "estimation_cycle_steps": estimation_cycle(shapmix_config, args.batch_size, get_layout(LAYOUT).num_parts),
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
        f"Shap-Mix estimate_fraction {settings['estimate_fraction']}, {settings['shapley_estimator']} estimator "
        f"(iter-1 timed over cycles of {settings['estimation_cycle_steps']} step(s))"
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
        "--cudnn-benchmark", action="store_true",
        help="let cuDNN time its convolution algorithms and keep the fastest (torch.backends.cudnn.benchmark)",
    )
    parser.add_argument(
        "--estimate-fraction", type=float, default=None,
        help="Shap-Mix method.estimate_fraction (default: the library default; 1 = every sample)",
    )
    parser.add_argument(
        "--shapley-estimator", choices=("sampled", "exact"), default=None,
        help="Shap-Mix method.shapley_estimator (default: the library default)",
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
