"""The training loop: epochs of SGD with a warm-up schedule, checkpoints, evaluation and plots.

:func:`train` is the entry point (``shapmix train`` calls it).  The loop is method-agnostic:
mixing and saliency estimation plug in through :mod:`shapmix.methods`.

Run directory (``out_dir``)::

    config.yaml         the resolved configuration
    train.log           what was printed
    metrics.jsonl       one JSON object per epoch (loss, train accuracy, lr, time, val metrics)
    metrics.json        final test metrics (last epoch; plus best-on-validation if configured)
    test_scores.npz     per-sample test logits (names, logits, labels) for ensembling
    last.pt             everything needed to resume exactly, written atomically every epoch,
                        every checkpoint.every_steps / every_minutes and when stopped by a signal
    last.previous.pt    the epoch before: resuming falls back to it when last.pt is unreadable
    best.pt             best epoch on the validation split (only with data.val_split)
    class_accuracy.png  per-class test accuracy ordered by training frequency, groups marked
    training_curves.png loss, accuracy and learning rate per epoch
    tensorboard/        TensorBoard events (log.tensorboard=true)
    saliency_table.json / .csv, saliency_heatmap.png, part_saliency.png
                        Shap-Mix runs: the online saliency table (values and update counts per
                        class and part combination) and its pictures

Resume is exact on the CPU: the shuffling and augmentation generators are derived from
``(seed, epoch, rank)`` (the named streams of :mod:`shapmix.seeds`) and every other RNG state is
checkpointed, so an interrupted run resumed from ``last.pt`` ends with the same weights as an
uninterrupted one.  That holds in the middle of an epoch too: a mid-epoch checkpoint (written on
schedule, or when SIGTERM / SIGINT stops the run, see :mod:`shapmix.engine.preemption`) holds the
position in the epoch's sample order and every rank's generators, running totals and method state.

Speed options (``train.*``): ``precision`` runs the training forward and loss, the method's
estimation and evaluation under ``torch.autocast`` (fp16 with a gradient scaler), ``compile``
compiles the model with ``torch.compile``, ``cudnn_benchmark`` lets cuDNN tune convolutions.  The
training loader is built once, so its workers persist across epochs (``data.persistent_workers``).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..config import Config, config_to_dict
from ..data.longtail import group_classes
from ..data.samplers import (
    REBALANCING_SAMPLERS,
    EpochSampler,
    RebalancingSampler,
    ResumableSampler,
    ShuffleSampler,
    epoch_length,
)
from ..errors import CheckpointError
from ..losses import build_loss
from ..seeds import AUGMENT, SHUFFLE, DeviceGenerator
from ..viz.plots import plot_class_accuracy, plot_training_curves
from .builders import (
    RunData,
    build_pipelines,
    build_run_model,
    build_test_pipeline,
    eval_loader,
    mean_input_sequence,
    open_run_data,
    precision_context,
    torch_threads,
)
from .checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_latest_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from ..distributed import init_distributed, synchronize_batch_norm
from .evaluate import Metrics, compute_metrics, format_metrics_table, predict, save_scores
from .predict import INPUT_SPEC_KEY, InputSpec
from .finetune import SecondStage, build_second_stage
from ..methods import BASELINE_METHODS, TrainingMethod, TrainingNetwork, build_method
from .preemption import PEER_STOP_SIGNAL, CheckpointTimer, StopRequest, TrainingInterrupted, ignore_stop_signals

__all__ = ["Trainer", "train", "lr_factor", "EpochCallback", "EpochPosition", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 1
LOGGER_NAME = "shapmix"
# The rank position of a stream every rank shares (the training order is one global sequence).
SHARED_RANK = 0
# Steps between progress-bar updates (each one reads the running totals back from the device).
PROGRESS_EVERY = 10

EpochCallback = Callable[["Trainer", int, dict[str, Any]], None]


@dataclass
class EpochPosition:
    """Where this rank stands in an epoch: what a run resumed mid-epoch continues from.

    Attributes:
        epoch: the epoch (0-based).
        step: optimisation steps of it already taken.
        seconds: training time spent in it so far.
        totals: ``(3,)`` float64 running loss sum, correct predictions and samples of this rank.
        augment: this rank's augmentation stream (:meth:`DeviceGenerator.state_dict`; ``None``:
            the epoch's fresh one).
    """

    epoch: int
    step: int = 0
    seconds: float = 0.0
    totals: torch.Tensor | None = None
    augment: dict[str, Any] | None = None


def _to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (nested dicts, lists, tuples) moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value


def lr_factor(step: int, steps_per_epoch: int, schedule: Any, base_lr: float) -> float:
    """Learning-rate multiplier for optimiser step ``step`` (0-based).

    Linear warm-up over ``warmup_epochs`` (the first step already has a small positive rate),
    then multistep (``gamma`` at each milestone epoch) or cosine decay to ``min_lr``.
    """
    epoch = step / steps_per_epoch
    if epoch < schedule.warmup_epochs:
        return (step + 1) / (schedule.warmup_epochs * steps_per_epoch)
    if schedule.kind == "multistep":
        return schedule.gamma ** sum(epoch >= milestone for milestone in schedule.milestones)
    span = max(schedule.epochs - schedule.warmup_epochs, 1e-8)
    progress = min((epoch - schedule.warmup_epochs) / span, 1.0)
    floor = schedule.min_lr / base_lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _setup_logger(out_dir: Path, is_main: bool) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    if is_main:
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(console)
        file_handler = logging.FileHandler(out_dir / "train.log")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(file_handler)
    return logger


class Trainer:
    """Trains one configured run in ``out_dir``.

    Args:
        config: the validated run configuration.
        out_dir: run directory (created).
        resume: continue from ``out_dir/last.pt`` if it exists.
        callbacks: called as ``callback(trainer, epoch, epoch_record)`` after each epoch's
            checkpoint is written (e.g. to stop early or to report progress).
    """

    def __init__(
        self,
        config: Config,
        out_dir: str | Path,
        resume: bool = False,
        callbacks: Sequence[EpochCallback] = (),
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.callbacks = list(callbacks)
        self._start_process()
        self._build_run()
        self._build_network()
        self._build_optimisation()
        self.start_epoch = 0
        self.position: EpochPosition | None = None  # set by a resume in the middle of an epoch
        self.history: list[dict[str, Any]] = []
        self.best_val: float | None = None
        self.tensorboard = self._open_tensorboard() if config.log.tensorboard else None
        resumed = resume and self._resume()
        if not resumed and self.context.is_main:  # a fresh run, also `--resume` into a new directory
            (self.out_dir / "config.yaml").write_text(
                yaml.safe_dump(config_to_dict(config), sort_keys=False), encoding="utf-8"
            )

    # ----------------------------------------------------------------------------- setup
    def _start_process(self) -> None:
        """This process's rank and device, the run directory, the log, threads and global seeds."""
        config = self.config
        self.context, self.device = init_distributed(config.train.device)
        if self.context.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.context.barrier()
        self.logger = _setup_logger(self.out_dir, self.context.is_main)
        torch_threads(config.train.threads)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = config.train.cudnn_benchmark
        # torch's global generator initialises the model's weights (see shapmix.seeds)
        torch.manual_seed(config.train.seed)
        np.random.seed(config.train.seed % 2**32)

    def _build_run(self) -> None:
        """The data, input pipelines, model, second stage, loss and training method."""
        config = self.config
        self.data: RunData = open_run_data(config, self.context)
        dataset = self.data.dataset
        self.train_counts = self.data.train_counts
        self.groups = group_classes(
            self.train_counts, config.data.many_threshold, config.data.few_threshold
        )
        self.train_pipeline, self.test_pipeline = build_pipelines(config, dataset)
        self.model = build_run_model(config, dataset).to(self.device)
        # A decoupled second stage loads its first stage and freezes the backbone before the
        # DDP wrapper and the optimiser see the parameters.
        self.second_stage: SecondStage = build_second_stage(config, self.model, dataset.class_names, self.device)
        self.criterion = build_loss(config.loss, self.train_counts, config.schedule.epochs).to(self.device)
        self.criterion.attach(self.model)  # only losses that need the classifier's input hook it
        baseline = None
        if config.method.name in BASELINE_METHODS:
            baseline = mean_input_sequence(
                self.data.train, self.test_pipeline, config.train.eval_batch_size, self.device, self.context
            )
        self.method: TrainingMethod = build_method(
            config.method,
            dataset.num_classes,
            self.train_counts,
            dataset.layout,
            config.train.seed,
            baseline=baseline,
            context=self.context,
            class_names=dataset.class_names,
            model=self.model,
            train_split=self.data.train,
            train_pipeline=self.train_pipeline,
            total_epochs=config.schedule.epochs,
        )

    def _build_network(self) -> None:
        """What trains (the model, with the method's heads if it has any), wrapped for DDP."""
        # A method's own heads (GLMC) train, and are wrapped for DDP, together with the model.
        if self.config.train.compile:
            # in place, so the state dict keeps its keys and the method, the second stage and
            # evaluation all run the compiled forward
            self.model.compile()
        self.network: nn.Module = self.model
        if self.method.heads is not None:
            self.network = TrainingNetwork(self.model, self.method.heads)
        self.ddp_model: nn.Module = self.network
        if self.context.is_distributed:
            if self.config.train.sync_batchnorm:
                # in place: self.model and the method keep referring to the same modules
                synchronize_batch_norm(self.network, self.device)
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.network, device_ids=device_ids)

    def _build_optimisation(self) -> None:
        """Batch sizes and epoch length, the SGD optimiser and the per-step schedule."""
        config = self.config
        if config.train.batch_size % self.context.world_size:
            raise ValueError(
                f"train.batch_size={config.train.batch_size} is not divisible by the "
                f"{self.context.world_size} processes"
            )
        self.local_batch = config.train.batch_size // self.context.world_size
        if len(self.data.train) < config.train.batch_size:
            raise ValueError(
                f"the training split has {len(self.data.train)} samples, fewer than one batch "
                f"(train.batch_size={config.train.batch_size})"
            )
        # ros lengthens the epoch (every class topped up to the largest); the others keep the split size
        self.steps_per_epoch = epoch_length(config.data.sampler, self.data.train.labels) // config.train.batch_size
        self.optimizer = torch.optim.SGD(
            [p for p in self.network.parameters() if p.requires_grad],
            lr=config.optim.lr,
            momentum=config.optim.momentum,
            nesterov=config.optim.nesterov,
            weight_decay=config.optim.weight_decay,
        )
        # The loss may scale the schedule from some epoch on (the IB loss lowers it when it starts).
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_factor(step, self.steps_per_epoch, config.schedule, config.optim.lr)
            * self.criterion.lr_multiplier(step // self.steps_per_epoch),
        )
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.train.precision == "fp16")
        self.train_sampler = ResumableSampler(self._epoch_sampler())
        self.train_loader: DataLoader | None = self._build_train_loader()
        self.checkpoint_timer = CheckpointTimer(config.checkpoint.every_steps, config.checkpoint.every_minutes)

    def autocast(self) -> AbstractContextManager:
        """The mixed-precision context of ``train.precision`` (inactive for fp32)."""
        return precision_context(self.config.train.precision, self.device)

    # ----------------------------------------------------------------------------- state
    def _open_tensorboard(self) -> Any:
        if not self.context.is_main:
            return None
        try:  # delayed: TensorBoard is an optional extra, needed only with log.tensorboard=true
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise RuntimeError(
                "log.tensorboard=true needs TensorBoard: pip install 'shapmix[tensorboard]'"
            ) from error
        return SummaryWriter(str(self.out_dir / "tensorboard"))

    def state_dict(self, epoch: int) -> dict[str, Any]:
        """Everything needed to resume after ``epoch`` (0-based, finished)."""
        return {
            "version": CHECKPOINT_VERSION,
            "epoch": epoch,
            "config": config_to_dict(self.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "method": self.method.state_dict(),
            "rng": capture_rng_state(),
            "history": self.history,
            "best_val": self.best_val,
            "class_names": list(self.data.dataset.class_names),
            "train_counts": self.train_counts.tolist(),
            INPUT_SPEC_KEY: InputSpec.from_dataset(self.data.dataset).to_dict(),  # for predict and export
        }

    def _resume(self) -> bool:
        """Restore ``last.pt`` (or the checkpoint it replaced); ``False`` when there is none."""
        path = self.out_dir / "last.pt"
        # Loaded on the CPU: every component moves its own state to its device (the model and
        # optimiser to the parameters', RNG and generator states stay CPU tensors as they must).
        found = load_latest_checkpoint(path, self.logger)
        if found is None:
            self.logger.info(f"no checkpoint at {path}: starting from scratch")
            return False
        state, path = found
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{path}: checkpoint version {state.get('version')} is not supported")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.history = list(state["history"])
        self.best_val = state["best_val"]
        self.start_epoch = int(state["epoch"]) + 1
        in_epoch = state.get("in_epoch")
        if in_epoch is None:
            self.method.load_state_dict(state["method"])
            restore_rng_state(state["rng"])
            self.logger.info(f"resumed from {path} after epoch {self.start_epoch}")
            return True
        if in_epoch["world_size"] != self.context.world_size:
            raise CheckpointError(
                f"{path} was written in the middle of epoch {in_epoch['epoch'] + 1} by "
                f"{in_epoch['world_size']} process(es); resume it with the same number of processes "
                f"(this run has {self.context.world_size})"
            )
        mine = in_epoch["ranks"][self.context.rank]
        self.method.load_state_dict(mine["method"])
        restore_rng_state(mine["rng"])
        self.position = EpochPosition(
            epoch=int(in_epoch["epoch"]),
            step=int(in_epoch["step"]),
            seconds=float(in_epoch["seconds"]),
            totals=mine["totals"],
            augment=mine["augment"],
        )
        self.logger.info(f"resumed from {path} in epoch {self.start_epoch + 1} after step {self.position.step}")
        return True

    def _save_position(self, position: EpochPosition, totals: torch.Tensor, augment: DeviceGenerator) -> Path:
        """Write ``last.pt`` at ``position`` in its epoch (every rank calls this at the same step)."""
        local = {
            "totals": totals.detach().cpu(),
            "augment": augment.state_dict(),
            "method": _to_cpu(self.method.state_dict()),
            "rng": capture_rng_state(),
        }
        ranks = self.context.all_gather_object(local)
        path = self.out_dir / "last.pt"
        if self.context.is_main:
            state = self.state_dict(position.epoch - 1)
            state["in_epoch"] = {
                "epoch": position.epoch,
                "step": position.step,
                "seconds": position.seconds,
                "world_size": self.context.world_size,
                "ranks": ranks,
            }
            save_checkpoint(state, path, keep_previous=True)
        self.context.barrier()
        self.checkpoint_timer.written()
        return path

    # ----------------------------------------------------------------------------- loop
    def _epoch_sampler(self) -> EpochSampler:
        """The run's training order, one sequence per epoch (each rank its shard under DDP)."""
        # the samplers derive each epoch's sequence from this seed themselves
        seed = SHUFFLE.derive(self.config.train.seed, 0, SHARED_RANK)
        if self.config.data.sampler in REBALANCING_SAMPLERS:
            return RebalancingSampler(
                self.config.data.sampler, self.data.train.labels, seed, self.context.rank, self.context.world_size
            )
        if self.context.is_distributed:
            return DistributedSampler(
                self.data.train, self.context.world_size, self.context.rank, shuffle=True, seed=seed % 2**31, drop_last=True
            )
        run_seed = self.config.train.seed
        return ShuffleSampler(len(self.data.train), lambda epoch: SHUFFLE.derive(run_seed, epoch, SHARED_RANK))

    def _build_train_loader(self) -> DataLoader:
        """One loader for the whole run (its workers, if any, persist across epochs)."""
        data = self.config.data
        workers = data.num_workers > 0
        return DataLoader(
            self.data.train,
            batch_size=self.local_batch,
            sampler=self.train_sampler,
            drop_last=True,
            num_workers=data.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers and data.persistent_workers,
            prefetch_factor=data.prefetch_factor if workers else None,
            worker_init_fn=ignore_stop_signals if workers else None,
        )

    def _augment_stream(self, epoch: int) -> DeviceGenerator:
        """This rank's stream of the epoch's augmentation draws (crop, rotation), drawn on the
        batch's device."""
        seed = AUGMENT.derive(self.config.train.seed, epoch, self.context.rank)
        return DeviceGenerator(seed=seed, name=f"the augmentation of epoch {epoch + 1}")

    def _checkpoint_now(self, global_steps_done: int, stop: StopRequest) -> tuple[bool, bool]:
        """``(stop, save)`` after a step, the same on every rank: stop when any rank got a stop
        signal; save a mid-epoch checkpoint when stopping or when the timer says so."""
        timer = self.checkpoint_timer
        steps_due = timer.steps_due(global_steps_done)
        if not self.context.is_distributed:
            stopping = stop.requested
            return stopping, stopping or steps_due or timer.time_due()
        # A signal can reach one rank only and clocks differ: agree on the host, every step.
        stopping, time_due = self.context.any_rank([stop.requested, timer.time_due()])
        return stopping, stopping or steps_due or time_due

    def _train_epoch(self, position: EpochPosition, stop: StopRequest) -> dict[str, Any]:
        """Train ``position.epoch`` from ``position.step`` on and return its record.

        Raises:
            TrainingInterrupted: a stop signal arrived; the position is checkpointed.
        """
        epoch = position.epoch
        self.ddp_model.train()
        self.criterion.set_epoch(epoch)  # DRW / IB switch by epoch, also right after a resume
        self.second_stage.set_train_mode(self.model)
        augment_stream = self._augment_stream(epoch)
        if position.augment is not None:
            augment_stream.load_state_dict(position.augment)
        augment = augment_stream.on(self.device)
        # loss sum, correct, samples: accumulated on the device so a step never waits for it
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)
        if position.totals is not None:
            totals.copy_(position.totals)
        started = time.perf_counter() - position.seconds
        self.train_sampler.set_epoch(epoch, start=position.step * self.local_batch)
        bar = tqdm(
            self.train_loader,
            total=self.steps_per_epoch,
            initial=position.step,
            desc=f"epoch {epoch + 1}/{self.config.schedule.epochs}",
            disable=not (self.context.is_main and self.config.log.progress),
            leave=False,
            dynamic_ncols=True,
        )
        for step, batch in enumerate(bar, start=position.step):
            if step >= self.steps_per_epoch:
                break
            x = batch.x.to(self.device, non_blocking=True)
            y = batch.label.to(self.device, non_blocking=True)
            x, _ = self.train_pipeline(x, batch.length.to(self.device, non_blocking=True), augment)
            global_step = epoch * self.steps_per_epoch + step
            with self.autocast():
                self.method.before_step(self.model, x, y, epoch, global_step)
                loss, logits = self.method.training_loss(self.ddp_model, x, y, self.criterion, epoch)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.second_stage.after_step(self.model)
            self.scheduler.step()
            with torch.no_grad():
                totals[0] += loss.detach().double() * len(y)
                totals[1] += (logits.argmax(1) == y).sum()
                totals[2] += len(y)
            if step % PROGRESS_EVERY == 0 and not bar.disable:
                elapsed = time.perf_counter() - started
                loss_sum, _, samples = totals.tolist()  # the one read-back of these N steps
                bar.set_postfix(
                    loss=f"{loss_sum / samples:.3f}",
                    samples_per_s=f"{samples * self.context.world_size / max(elapsed, 1e-9):.0f}",
                )
            stopping, saving = self._checkpoint_now(global_step + 1, stop)
            if saving:
                done = EpochPosition(epoch, step + 1, time.perf_counter() - started)
                path = self._save_position(done, totals, augment_stream)
                if stopping:
                    bar.close()
                    raise TrainingInterrupted(stop.signum or PEER_STOP_SIGNAL, path, epoch, step + 1)
        bar.close()
        self.context.all_reduce_sum(totals)
        seconds = time.perf_counter() - started
        return {
            "epoch": epoch + 1,
            "loss": totals[0].item() / max(totals[2].item(), 1),
            "train_top1": 100.0 * totals[1].item() / max(totals[2].item(), 1),
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": seconds,
            "samples_per_s": totals[2].item() / max(seconds, 1e-9),
        }

    def _prepare_test(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.test_pipeline(x, lengths)[0]

    def evaluate_split(self, split_name: str) -> tuple[Metrics, np.ndarray, np.ndarray, np.ndarray]:
        """Eval-mode metrics on ``test`` or ``val``: ``(metrics, rows, logits, labels)``."""
        split = self.data.test if split_name == "test" else self.data.val
        if split is None:
            raise ValueError(f"no {split_name} split configured")
        loader = eval_loader(
            split,
            self.config.train.eval_batch_size,
            self.context,
            self.config.data.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        num_clips = self.config.eval.num_clips
        prepare = self._prepare_test
        if num_clips > 1:  # the central-crop test pipeline stays what the Shap-Mix baseline is built with
            dataset = self.data.dataset
            clips = build_test_pipeline(self.config, dataset.layout, dataset.channels, num_clips)
            prepare = lambda x, lengths: clips(x, lengths)[0]  # noqa: E731
        with self.autocast():
            rows, logits, labels = predict(self.model, loader, prepare, self.device, self.context, num_clips)
        metrics = compute_metrics(
            logits, labels, self.train_counts, self.config.data.many_threshold, self.config.data.few_threshold
        )
        return metrics, rows, logits, labels

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs, then evaluate the last epoch on the test split."""
        cfg = self.config
        if self.start_epoch == 0 and self.position is None:
            self._log_setup()
        with StopRequest() as stop:
            for epoch in range(self.start_epoch, cfg.schedule.epochs):
                self._fit_epoch(epoch, stop)
        self._stop_loader_workers()
        return self._finish()

    def _fit_epoch(self, epoch: int, stop: StopRequest) -> None:
        """Train one epoch (from the resumed position, if any), validate, checkpoint, call back."""
        position = self.position if self.position is not None and self.position.epoch == epoch else EpochPosition(epoch)
        self.position = None
        record = self._train_epoch(position, stop)
        if self.data.val is not None:
            val_metrics = self.evaluate_split("val")[0]
            record["val"] = val_metrics.summary()
            if self.best_val is None or val_metrics.top1 > self.best_val:
                self.best_val = val_metrics.top1
                record["best_val"] = True
        self.history.append(record)
        self._log_epoch(record)
        path = self.out_dir / "last.pt"
        if self.context.is_main:
            state = self.state_dict(epoch)
            save_checkpoint(state, path, keep_previous=True)
            if record.get("best_val"):
                save_checkpoint(state, self.out_dir / "best.pt")
        self.context.barrier()
        self.checkpoint_timer.written()
        for callback in self.callbacks:
            callback(self, epoch, record)
        # a signal that arrived during validation or the write stops the run here, at a clean epoch end
        if epoch + 1 < self.config.schedule.epochs and self.context.any_rank([stop.requested])[0]:
            raise TrainingInterrupted(stop.signum or PEER_STOP_SIGNAL, path, epoch, self.steps_per_epoch)

    def _log_setup(self) -> None:
        dataset = self.data.dataset
        params = sum(p.numel() for p in self.model.parameters())
        counts = self.train_counts
        self.logger.info(
            f"data: {dataset.root} ({dataset.layout.name}, {dataset.num_classes} classes), "
            f"train {len(self.data.train)} samples (per class {counts.max()}..{counts.min()}, "
            f"imbalance {counts.max() / max(counts.min(), 1):.0f}), test {len(self.data.test)}"
        )
        self.logger.info(
            f"model: {self.config.model.name} ({params / 1e6:.3f}M parameters) on {self.device}, "
            f"{self.context.world_size} process(es)"
            f"{' (batch norm synchronised)' if self.context.is_distributed and self.config.train.sync_batchnorm else ''}, "
            f"loss {self.config.loss.name}, "
            f"method {self.config.method.name}, {self.config.schedule.epochs} epochs x "
            f"{self.steps_per_epoch} steps"
        )

    def _log_epoch(self, record: dict[str, Any]) -> None:
        if not self.context.is_main:
            return
        text = (
            f"epoch {record['epoch']:>3}/{self.config.schedule.epochs}: loss {record['loss']:.4f} "
            f"train top1 {record['train_top1']:.1f} lr {record['lr']:.4g} "
            f"({record['seconds']:.1f}s, {record['samples_per_s']:.0f} samples/s)"
        )
        if "val" in record:
            text += f" val top1 {record['val']['top1']:.1f}"
        self.logger.info(text)
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            step = record["epoch"]
            for key in ("loss", "train_top1", "lr", "samples_per_s"):
                self.tensorboard.add_scalar(f"train/{key}", record[key], step)
            for key, value in record.get("val", {}).items():
                if isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(f"val/{key}", value, step)

    def _finish(self) -> dict[str, Any]:
        metrics, rows, logits, labels = self.evaluate_split("test")
        result: dict[str, Any] = {"test": metrics.to_dict(), "epochs": self.config.schedule.epochs}
        if self.data.val is not None and (self.out_dir / "best.pt").exists():
            best = load_checkpoint(self.out_dir / "best.pt")
            last_weights = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(best["model"])
            best_metrics = self.evaluate_split("test")[0]
            self.model.load_state_dict(last_weights)
            result["test_best_val"] = {**best_metrics.summary(), "epoch": int(best["epoch"]) + 1}
        if self.context.is_main:
            (self.out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
            names = [self.data.dataset.names[i] for i in rows]
            save_scores(self.out_dir / "test_scores.npz", names, logits, labels)
            self.logger.info(format_metrics_table(metrics, "test"))
            if self.config.log.plots:
                self._plot(metrics)
            self.method.write_artifacts(
                self.out_dir,
                self.train_counts,
                (self.config.data.many_threshold, self.config.data.few_threshold),
                self.config.log.plots,
            )
            if self.tensorboard is not None:
                for key, value in metrics.summary().items():
                    if isinstance(value, (int, float)):
                        self.tensorboard.add_scalar(f"test/{key}", value, self.config.schedule.epochs)
                self.tensorboard.close()
            self.logger.info(f"run directory: {self.out_dir}")
        return result

    def _plot(self, metrics: Metrics) -> None:
        plot_class_accuracy(
            metrics.per_class,
            self.train_counts,
            self.groups,
            self.data.dataset.class_names,
            self.out_dir / "class_accuracy.png",
        )
        plot_training_curves(self.history, self.out_dir / "training_curves.png")

    def _stop_loader_workers(self) -> None:
        """End the training loader's persistent workers now: left to the interpreter's exit they
        would wait for work forever (multiprocessing joins them before the loader is collected)."""
        self.train_loader = None  # its iterator, the only owner of the workers, goes with it

    def close(self, failed: bool = False) -> None:
        """Stop the loader's workers and leave the process group (see
        :meth:`DistributedContext.close`; ``failed`` after an error)."""
        self._stop_loader_workers()
        self.context.close(failed=failed)


def train(
    config: Config, out_dir: str | Path, resume: bool = False, callbacks: Sequence[EpochCallback] = ()
) -> dict[str, Any]:
    """Train ``config`` in ``out_dir`` and return the final metrics (see :class:`Trainer`).

    Raises:
        TrainingInterrupted: SIGTERM or SIGINT stopped the run after it wrote ``last.pt``.
    """
    trainer = Trainer(config, out_dir, resume=resume, callbacks=callbacks)
    try:
        result = trainer.fit()
    except TrainingInterrupted:
        trainer.close()  # every rank stopped at the same step: leave the group together
        raise
    except BaseException:
        trainer.close(failed=True)
        raise
    trainer.close()
    return result
