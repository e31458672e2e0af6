"""The GPU check of issue 13: device tests, step times, throughput and bf16 on one GPU, in at most 8 minutes.

Run from the repository root of a checkout on a machine with a CUDA GPU (``pip install -c
constraints.txt -e ".[test]"`` done, or not: the checkout's ``src/`` is put first on the path)::

    python benchmarks/gpu_check.py > gpu_check.json      # progress on stderr, one JSON on stdout

and on a CPU, tiny sizes, to check the script itself (tests/test_benchmarks.py does)::

    python benchmarks/gpu_check.py --device cpu --quick

Phases, each a subprocess with its own time budget (a phase that fails, crashes or runs out of
time is reported in the JSON with its error, and the others still run):

``tests``
    ``python -m pytest -n 0 --device DEVICE -m cuda tests``, in one process (tests/conftest.py:
    the device tests of resume, mixing, Shapley estimation and DDP on the device, and the
    CUDA-only tests), then
    ``tests/test_no_host_sync.py`` (training steps under ``torch.cuda.set_sync_debug_mode("error")``).
``step_time_exact``, ``step_time_sampled``
    ``benchmarks/step_time.py --json`` at batch 64, 64 frames, full-width CTR-GCN (64 channels,
    10 blocks), 60 classes, 2 persons (NTU size), ``--cudnn-benchmark`` as the trainer on CUDA,
    for Shap-Mix's exact and sampled Shapley estimators.
``throughput``
    samples/s of training steps as the trainer runs them on the ``ntu-lt`` recipe (Balanced
    Softmax, SGD; a raw NTU-length batch copied to the device and put through the training input
    pipeline, then the method's estimation, mixing, forward, backward and update): plain,
    ST-Mix and Shap-Mix (the recipe's: exact estimator, every step), against the bare model's
    forward+backward on the same (already prepared) batch; peak memory of each; and one
    Shap-Mix step split into its phases (synchronised between phases) for the share of the
    data pipeline and the mixing.
``precision``
    samples/s of the bare model's training step in fp32 and under
    ``torch.autocast(device_type, dtype=torch.bfloat16)`` (forward and loss), with the TF32
    settings in force (fp32 convolutions may use TF32 by PyTorch's default).

The summary holds the device, torch, CUDA and cuDNN versions, every phase's figures, and the
issue's targets with their verdicts: ST-Mix / doubled step <= 1.03, Shap-Mix iter-1 / ST-Mix
<= 1.15 (each estimator), data pipeline + mixing <= 10% of a Shap-Mix step, bf16 >= 1.5x fp32.
The exit status is 0 when every phase ran and every test passed (targets are reported, not
enforced), 1 otherwise, 2 when the device is not available.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from xml.etree import ElementTree

import torch
import torch.nn.functional as F

STARTED = time.monotonic()
"""When this process started: the budget counts from here."""
REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
TESTS = REPO / "tests"
NO_HOST_SYNC_TESTS = TESTS / "test_no_host_sync.py"
STEP_TIME = REPO / "benchmarks" / "step_time.py"

TOTAL_BUDGET_S = 480.0
"""The issue's limit for the whole check (8 minutes)."""
PHASE_BUDGETS_S = {
    "tests": 200.0,
    "step_time_exact": 60.0,
    "step_time_sampled": 60.0,
    "throughput": 80.0,
    "precision": 50.0,
}
"""Each phase's own limit; together they leave the rest of the total for starting processes."""
MIN_PHASE_S = 10.0
"""A phase is skipped when less than this is left of the total."""
TAIL_CHARS = 2000
"""How much of a failing subprocess's output the summary keeps."""
MAX_LISTED_FAILURES = 20
MIB = 2**20
RECIPE = "ntu-lt"
"""The packaged config whose data, loss, optimiser and Shap-Mix settings the throughput uses."""
NUM_CLASSES = 60
NUM_PERSONS = 2
LT_MAX_PER_CLASS = 600
LT_IMBALANCE = 100
RAW_MIN_FRAMES = 100
"""Raw sequences are 100 to ``raw_frames`` frames long before the crop-resize (NTU: up to 300)."""
SEED = 0
PRECISION_LR = 0.01
"""SGD of the precision phase: small enough that random data cannot make the weights diverge."""
PRECISION_MOMENTUM = 0.9
EPOCH = 0
"""Every step runs as in epoch 0 of a run whose methods have no warm-up."""


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of a check: NTU-sized on a GPU, tiny with ``--quick``."""

    batch_size: int
    frames: int
    raw_frames: int
    base_channels: int
    num_blocks: int
    step_time_rounds: int
    step_time_warmup_rounds: int
    warmup_steps: int
    timed_steps: int


FULL = Sizes(batch_size=64, frames=64, raw_frames=300, base_channels=64, num_blocks=10,
             step_time_rounds=10, step_time_warmup_rounds=2, warmup_steps=3, timed_steps=20)
QUICK = Sizes(batch_size=16, frames=16, raw_frames=32, base_channels=8, num_blocks=2,
              step_time_rounds=1, step_time_warmup_rounds=0, warmup_steps=1, timed_steps=2)
QUICK_TEST_SELECTION = ["tests/test_device.py", "-k", "method_estimates and stmix"]
"""With ``--quick`` the tests phase runs one fast device test (the machinery, not the suite)."""
QUICK_THREADS = 1


@dataclass(frozen=True)
class Target:
    """A figure of the issue and its limit."""

    source: str
    """Phase the figure comes from."""
    figure: str
    """Key of the figure in the phase's result."""
    limit: float
    at_most: bool
    """``value <= limit`` when true, else ``value >= limit``."""
    what: str


TARGETS = {
    "stmix_over_double": Target(
        "step_time_exact", "stmix_over_double", 1.03, True, "ST-Mix step / doubled plain step"
    ),
    "shapmix_iter1_over_stmix_exact": Target(
        "step_time_exact", "shapmix_iter1_over_stmix", 1.15, True, "Shap-Mix iter-1 (exact estimator) / ST-Mix"
    ),
    "shapmix_iter1_over_stmix_sampled": Target(
        "step_time_sampled", "shapmix_iter1_over_stmix", 1.15, True, "Shap-Mix iter-1 (sampled estimator) / ST-Mix"
    ),
    "pipeline_and_mixing_share": Target(
        "throughput", "pipeline_and_mixing_share", 0.10, True, "(data pipeline + mixing) / Shap-Mix step"
    ),
    "bf16_over_fp32": Target("precision", "bf16_over_fp32", 1.5, False, "bf16 / fp32 training throughput"),
}
"""The issue's GPU targets (``stmix_over_double`` does not depend on the estimator: taken from
the exact run; the sampled run's is in its phase)."""


def log(message: str) -> None:
    print(f"[gpu_check] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- subprocesses


def child_environment() -> dict[str, str]:
    """This environment with the checkout's ``src`` first on the path (the code under check)."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(SRC) if not path else f"{SRC}{os.pathsep}{path}"}


class PhaseFailure(Exception):
    """A phase that ran but did not pass; ``details`` go into the summary with the error."""

    def __init__(self, message: str, details: dict) -> None:
        super().__init__(message)
        self.details = details


class PhaseTimeout(Exception):
    """A phase's subprocess ran out of its time and was killed."""


@dataclass
class Completed:
    returncode: int | None
    """``None`` when the command ran out of time and was killed."""
    stdout: str
    stderr: str
    seconds: float


def run_command(command: list[str], timeout_s: float, env: dict[str, str]) -> Completed:
    """Run ``command`` in its own process group; kill the whole group when it runs out of time."""
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=max(timeout_s, 0.0))
        returncode: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # pytest's or torchrun's children too
        stdout, stderr = process.communicate()
        returncode = None
    return Completed(returncode, stdout, stderr, time.monotonic() - started)


def tail(text: str) -> str:
    return text[-TAIL_CHARS:]


def last_json_line(text: str) -> dict:
    """The last line of ``text`` that is a JSON object."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON object in the output")


# --------------------------------------------------------------------------- phase: tests


def junit_counts(path: Path) -> dict:
    """Test counts and the failing tests' names from a pytest JUnit XML report."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(suite.get(key, 0)) for suite in suites) for key in ("tests", "failures", "errors", "skipped")}
    failed = [
        f"{case.get('classname')}::{case.get('name')}"
        for suite in suites
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["failed_tests"] = failed[:MAX_LISTED_FAILURES]
    return counts


def run_tests(args: argparse.Namespace, budget_s: float) -> dict:
    """The device and CUDA-only tests, then the host-sync tests, within ``budget_s`` together."""
    runs = {}
    deadline = time.monotonic() + budget_s
    selection = QUICK_TEST_SELECTION if args.quick else ["-m", "cuda", "tests"]
    plan = [("device_tests", selection)]
    if args.quick:
        runs["no_host_sync"] = {"status": "skipped", "reason": "--quick runs one device test only"}
    elif NO_HOST_SYNC_TESTS.exists():
        plan.append(("no_host_sync", [str(NO_HOST_SYNC_TESTS.relative_to(REPO))]))
    else:
        runs["no_host_sync"] = {"status": "failed", "reason": f"{NO_HOST_SYNC_TESTS} is missing"}
    with TemporaryDirectory() as scratch:
        for name, arguments in plan:
            report = Path(scratch) / f"{name}.xml"
            command = [
                sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "--device", args.device,
                f"--junitxml={report}", *arguments,
            ]
            log(f"tests: {' '.join(command[1:])}")
            completed = run_command(command, deadline - time.monotonic(), child_environment())
            run: dict = {"command": " ".join(command[1:]), "seconds": round(completed.seconds, 1)}
            if completed.returncode is None:
                run.update(status="timeout", output=tail(completed.stdout + completed.stderr))
            else:
                run["returncode"] = completed.returncode
                if report.exists():
                    run.update(junit_counts(report))
                # 0: all passed; 5: nothing was selected, which is a failure of the check too
                run["status"] = "ok" if completed.returncode == 0 else "failed"
                if completed.returncode != 0:
                    run["output"] = tail(completed.stdout + completed.stderr)
            runs[name] = run
    failed = [name for name, run in runs.items() if run["status"] not in ("ok", "skipped")]
    if failed:
        raise PhaseFailure(f"test runs not passed: {', '.join(failed)}", {"runs": runs})
    return {"runs": runs}


# --------------------------------------------------------------------------- phase: step time


def run_step_time(args: argparse.Namespace, budget_s: float, estimator: str) -> dict:
    sizes = QUICK if args.quick else FULL
    command = [
        sys.executable, str(STEP_TIME), "--json", "--device", args.device, "--shapley-estimator", estimator,
        "--batch-size", str(sizes.batch_size), "--frames", str(sizes.frames),
        "--base-channels", str(sizes.base_channels), "--num-blocks", str(sizes.num_blocks),
        "--rounds", str(sizes.step_time_rounds), "--warmup-rounds", str(sizes.step_time_warmup_rounds),
    ]
    if args.device == "cuda":
        command.append("--cudnn-benchmark")
    if args.quick:
        command += ["--threads", str(QUICK_THREADS)]
    return run_child(command, budget_s)


def run_child(command: list[str], budget_s: float) -> dict:
    """Run a command that prints one JSON object; its object, or a :class:`PhaseFailure`."""
    log(" ".join(Path(part).name if part.endswith(".py") else part for part in command[1:]))
    completed = run_command(command, budget_s, child_environment())
    if completed.returncode is None:
        raise PhaseTimeout(f"ran out of its {budget_s:.0f}s:\n{tail(completed.stderr)}")
    if completed.returncode != 0:
        raise PhaseFailure(f"exit status {completed.returncode}", {"output": tail(completed.stderr)})
    return last_json_line(completed.stdout)


def run_in_child(args: argparse.Namespace, budget_s: float, phase: str) -> dict:
    """Run one of this script's measuring phases in a fresh process (its own CUDA context)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--phase", phase, "--device", args.device]
    if args.quick:
        command.append("--quick")
    return run_child(command, budget_s)


# --------------------------------------------------------------------------- measuring phases (child side)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float | None:
    """Peak memory allocated by tensors since the last reset, in MiB (``None`` off CUDA)."""
    return torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else None


def samples_per_second(step: Callable[[int], object], batch_size: int, sizes: Sizes, device: torch.device) -> dict:
    """Throughput of ``step(step_index)`` over ``sizes.timed_steps`` steps after warm-up, with
    the peak memory of the warm-up and timed steps; the device is synchronised only at the ends."""
    reset_peak_memory(device)
    for index in range(sizes.warmup_steps):
        step(index)
    synchronize(device)
    started = time.perf_counter()
    for index in range(sizes.warmup_steps, sizes.warmup_steps + sizes.timed_steps):
        step(index)
    synchronize(device)
    seconds = time.perf_counter() - started
    return {
        "samples_per_s": sizes.timed_steps * batch_size / seconds,
        "ms_per_step": 1e3 * seconds / sizes.timed_steps,
        "peak_mib": peak_memory_mib(device),
    }


def child_setup(args: argparse.Namespace) -> tuple[torch.device, Sizes]:
    """The device (with the trainer's CUDA setting) and the sizes of this check."""
    from shapmix.distributed import resolve_device

    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer on CUDA
    if args.quick:
        torch.set_num_threads(QUICK_THREADS)
    return device, (QUICK if args.quick else FULL)


def recipe_config(sizes: Sizes):
    """The ``ntu-lt`` recipe at the check's sizes."""
    from shapmix.config import load_config

    overrides = [
        f"data.window={sizes.frames}", f"data.min_crop_frames={sizes.frames}", f"train.batch_size={sizes.batch_size}",
        f"model.args={{base_channels: {sizes.base_channels}, num_blocks: {sizes.num_blocks}}}",
    ]
    return load_config(RECIPE, overrides)


def measure_throughput(args: argparse.Namespace) -> dict:
    import numpy as np

    from shapmix.data.format import SkeletonData
    from shapmix.data.longtail import longtail_counts
    from shapmix.engine.builders import build_pipelines, build_run_model
    from shapmix.methods import TrainingMethod, build_method
    from shapmix.losses import build_loss
    from shapmix.mixing import mean_sequence
    from shapmix.skeleton.layouts import get_layout

    device, sizes = child_setup(args)
    config = recipe_config(sizes)
    layout = get_layout("ntu25")
    rng = np.random.default_rng(SEED)
    n = sizes.batch_size
    raw = rng.standard_normal((n, 3, sizes.raw_frames, layout.num_joints, NUM_PERSONS), dtype=np.float32)
    lengths = rng.integers(min(RAW_MIN_FRAMES, sizes.raw_frames), sizes.raw_frames + 1, size=n)
    labels = rng.integers(NUM_CLASSES, size=n)
    dataset = SkeletonData(
        root=None, data=raw, labels=labels, lengths=lengths, names=[f"s{i}" for i in range(n)],
        layout=layout, class_names=[f"c{k}" for k in range(NUM_CLASSES)],
    )
    train_pipeline, test_pipeline = build_pipelines(config, dataset)
    pin = device.type == "cuda"
    host_x = torch.from_numpy(raw).pin_memory() if pin else torch.from_numpy(raw)
    host_lengths = torch.from_numpy(lengths).pin_memory() if pin else torch.from_numpy(lengths)
    y = torch.from_numpy(labels).to(device)
    augment = torch.Generator(device=device).manual_seed(SEED)
    counts = longtail_counts(NUM_CLASSES, LT_MAX_PER_CLASS, LT_IMBALANCE)

    torch.manual_seed(SEED)
    model = build_run_model(config, dataset).to(device).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.optim.lr, momentum=config.optim.momentum,
        nesterov=config.optim.nesterov, weight_decay=config.optim.weight_decay,
    )
    criterion = build_loss(config.loss, counts, config.schedule.epochs).to(device)
    prepared = test_pipeline(host_x.to(device), host_lengths.to(device))[0]
    baseline = mean_sequence(prepared)
    recipe_method = config.method.model_copy(update={"warmup_epochs": 0})
    methods = {
        "plain": TrainingMethod(),
        "stmix": build_method(recipe_method.model_copy(update={"name": "stmix"}), NUM_CLASSES, counts, layout, SEED),
        "shapmix": build_method(recipe_method, NUM_CLASSES, counts, layout, SEED, baseline=baseline),
    }

    def load_and_prepare() -> torch.Tensor:
        x = host_x.to(device, non_blocking=True)
        return train_pipeline(x, host_lengths.to(device, non_blocking=True), augment)[0]

    def update(x: torch.Tensor, mixed: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """Forward clean (+ mixed), loss, backward and update, as the trainer's step."""
        if mixed is None:
            loss = criterion(model(x), y)
        else:
            logits = model(torch.cat([x, mixed[0]]))
            loss = criterion(logits[:n], y) + criterion(logits[n:], mixed[1])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def training_step(method: TrainingMethod) -> Callable[[int], None]:
        def step(index: int) -> None:
            x = load_and_prepare()
            method.before_step(model, x, y, EPOCH, index)
            update(x, method.mix(x, y, EPOCH))

        return step

    def bare_step(index: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        criterion(model(prepared), y).backward()

    results = {"bare": samples_per_second(bare_step, n, sizes, device)}
    for name, method in methods.items():
        results[name] = samples_per_second(training_step(method), n, sizes, device)
    phases_ms = shapmix_phases(methods["shapmix"], load_and_prepare, update, model, y, sizes, device)
    bare = results["bare"]["samples_per_s"]
    step_ms = sum(phases_ms.values())
    return {
        "samples_per_s": {name: result["samples_per_s"] for name, result in results.items()},
        "relative_to_bare": {name: result["samples_per_s"] / bare for name, result in results.items()},
        "ms_per_step": {name: result["ms_per_step"] for name, result in results.items()},
        "peak_mib": {name: result["peak_mib"] for name, result in results.items()},
        "shapmix_phases_ms": phases_ms,
        "pipeline_and_mixing_share": (phases_ms["pipeline"] + phases_ms["mix"]) / step_ms,
        "settings": {
            "recipe": RECIPE, "batch_size": n, "frames": sizes.frames, "raw_frames": sizes.raw_frames,
            "base_channels": sizes.base_channels, "num_blocks": sizes.num_blocks,
            "shapley_estimator": recipe_method.shapley_estimator, "interval": recipe_method.interval,
            "estimate_fraction": recipe_method.estimate_fraction, "loss": config.loss.name,
            "warmup_steps": sizes.warmup_steps, "timed_steps": sizes.timed_steps,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
        },
    }


def shapmix_phases(method, load_and_prepare, update, model, y, sizes: Sizes, device) -> dict[str, float]:
    """Mean ms per Shap-Mix step of each phase (the device synchronised between phases):
    ``pipeline`` (copy of the raw batch to the device and the training input pipeline),
    ``estimate``, ``mix`` and ``train`` (forward, backward, update)."""
    totals = {"pipeline": 0.0, "estimate": 0.0, "mix": 0.0, "train": 0.0}
    first = sizes.warmup_steps + sizes.timed_steps  # continues the measured run's steps
    for index in range(first, first + sizes.timed_steps):
        synchronize(device)
        started = time.perf_counter()
        x = load_and_prepare()
        synchronize(device)
        prepared = time.perf_counter()
        method.before_step(model, x, y, EPOCH, index)
        synchronize(device)
        estimated = time.perf_counter()
        mixed = method.mix(x, y, EPOCH)
        synchronize(device)
        mixed_at = time.perf_counter()
        update(x, mixed)
        synchronize(device)
        done = time.perf_counter()
        totals["pipeline"] += prepared - started
        totals["estimate"] += estimated - prepared
        totals["mix"] += mixed_at - estimated
        totals["train"] += done - mixed_at
    return {phase: 1e3 * seconds / sizes.timed_steps for phase, seconds in totals.items()}


def measure_precision(args: argparse.Namespace) -> dict:
    from shapmix.models import build_model
    from shapmix.skeleton.layouts import get_layout

    device, sizes = child_setup(args)
    layout = get_layout("ntu25")
    n = sizes.batch_size
    torch.manual_seed(SEED)
    model = build_model(
        "ctrgcn", num_classes=NUM_CLASSES, layout=layout, num_persons=NUM_PERSONS,
        base_channels=sizes.base_channels, num_blocks=sizes.num_blocks,
    ).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=PRECISION_LR, momentum=PRECISION_MOMENTUM)
    x = torch.randn(n, 3, sizes.frames, layout.num_joints, NUM_PERSONS, device=device)
    y = torch.randint(NUM_CLASSES, (n,), device=device)

    def step_with(dtype: torch.dtype | None) -> Callable[[int], None]:
        def step(index: int) -> None:
            autocast = contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
            with autocast:
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    fp32 = samples_per_second(step_with(None), n, sizes, device)
    bf16 = samples_per_second(step_with(torch.bfloat16), n, sizes, device)
    return {
        "fp32": fp32,
        "bf16": bf16,
        "bf16_over_fp32": bf16["samples_per_s"] / fp32["samples_per_s"],
        "settings": {
            "batch_size": n, "frames": sizes.frames, "base_channels": sizes.base_channels,
            "num_blocks": sizes.num_blocks,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
        },
    }


CHILD_PHASES = {"throughput": measure_throughput, "precision": measure_precision}


# --------------------------------------------------------------------------- the check


def device_description(device: str) -> dict:
    description = {
        "device": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": sys.version.split()[0],
    }
    if device == "cuda":
        description.update(device_name=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count())
    else:
        description.update(device_name="cpu", cpu_count=os.cpu_count())
    return description


def judge(phases: dict) -> dict:
    """Every target with its value (``None`` when its phase failed) and whether it is met."""
    verdicts = {}
    for name, target in TARGETS.items():
        phase = phases.get(target.source, {})
        value = phase["result"].get(target.figure) if phase.get("status") == "ok" else None
        met = None if value is None else (value <= target.limit if target.at_most else value >= target.limit)
        verdicts[name] = {
            "what": target.what, "value": value, "comparison": "<=" if target.at_most else ">=",
            "limit": target.limit, "met": met, "source": target.source,
        }
    return verdicts


def run_check(args: argparse.Namespace) -> dict:
    sizes = QUICK if args.quick else FULL
    phases_to_run: dict[str, Callable[[float], dict]] = {
        "tests": lambda budget: run_tests(args, budget),
        "step_time_exact": lambda budget: run_step_time(args, budget, "exact"),
        "step_time_sampled": lambda budget: run_step_time(args, budget, "sampled"),
        "throughput": lambda budget: run_in_child(args, budget, "throughput"),
        "precision": lambda budget: run_in_child(args, budget, "precision"),
    }
    phases = {}
    for name, run in phases_to_run.items():
        left = args.budget_s - (time.monotonic() - STARTED)
        budget = min(PHASE_BUDGETS_S[name], left)
        if budget < MIN_PHASE_S:
            phases[name] = {"status": "skipped", "error": f"{left:.0f}s left of the {args.budget_s:.0f}s budget"}
            continue
        log(f"phase {name} (budget {budget:.0f}s)")
        phase_started = time.monotonic()
        phase: dict = {"budget_s": round(budget, 1)}
        try:
            phase.update(status="ok", result=run(budget))
        except PhaseFailure as failure:
            phase.update(status="failed", error=str(failure), **failure.details)
        except PhaseTimeout as error:
            phase.update(status="timeout", error=str(error))
        except Exception as error:  # a phase's own bug must not cost the other phases
            phase.update(status="failed", error=f"{type(error).__name__}: {error}", traceback=tail(traceback.format_exc()))
        phase["seconds"] = round(time.monotonic() - phase_started, 1)
        log(f"phase {name}: {phase['status']} in {phase['seconds']}s")
        phases[name] = phase
    targets = judge(phases)
    values = [verdict["met"] for verdict in targets.values()]
    return {
        "check": "shapmix GPU check (issue 13)",
        **device_description(args.device),
        "quick": args.quick,
        "sizes": asdict(sizes),
        "budget_s": args.budget_s,
        "elapsed_s": round(time.monotonic() - STARTED, 1),
        "phases": phases,
        "targets": targets,
        "all_phases_ok": all(phase["status"] == "ok" for phase in phases.values()),
        "all_targets_met": None if None in values else all(values),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="device under check (default cuda)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one device test: checks the script")
    parser.add_argument("--budget-s", type=float, default=TOTAL_BUDGET_S, help="wall-clock limit of the whole check")
    parser.add_argument("--phase", choices=sorted(CHILD_PHASES), help=argparse.SUPPRESS)  # a phase's subprocess
    args = parser.parse_args(argv)
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))  # the checkout's shapmix, also where another one is installed
    if args.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"check": "shapmix GPU check (issue 13)", **device_description("cpu"),
                          "error": "--device cuda: CUDA is not available"}))
        return 2
    if args.phase is not None:
        print(json.dumps(CHILD_PHASES[args.phase](args)))
        return 0
    summary = run_check(args)
    print(json.dumps(summary))
    return 0 if summary["all_phases_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
