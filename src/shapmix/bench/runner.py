"""``shapmix bench``: train a grid of methods x seeds, then write the comparison tables.

Every run is an ordinary training run (:func:`shapmix.engine.trainer.train`) in its own
directory; run ``k`` of the grid uses ``train.seed=k`` on the same data::

    DIR/<method>/seed<k>/            one-stage methods
    DIR/<method>/seed<k>/stage1/     two-stage methods: the first stage ...
    DIR/<method>/seed<k>/stage2/     ... and the second, started from stage1/last.pt
    DIR/bench.log                    progress of every invocation
    DIR/results.csv / .md / .png     see :mod:`shapmix.bench.report`

A two-stage method whose first stage is exactly a one-stage method of the same grid (``crt``
starts from plain cross entropy, i.e. ``ce``) reuses that run as its first stage instead of
training it twice; its train time then counts that run's time.

Resuming: a run whose ``metrics.json`` exists is finished and skipped; a run with a ``last.pt``
but no ``metrics.json`` was interrupted and resumes from it.  A run directory whose saved
``config.yaml`` differs from the grid's config for it is an error (the results would mix two
settings): give the grid another ``--out`` or delete the run.

A run that fails is logged with its error, its dependants (a second stage) are not started, the
grid goes on, and :class:`GridSummary` lists the failures.

Multi-GPU: ``torchrun --nproc_per_node N -m shapmix bench ...`` runs every run of the grid as a
DDP run; every process walks the same grid and only the main process logs and writes tables.
A run that fails on some processes only (e.g. out of memory on one GPU) can hang the others.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import yaml

from ..config import Config, ConfigError, build_config, config_to_dict
from ..engine.checkpoint import previous_path
from ..distributed import init_distributed
from ..engine.preemption import TrainingInterrupted
from ..engine.trainer import EpochCallback, train
from .presets import Preset, get_presets, preset_config
from .report import ResultRow, write_results

__all__ = ["BenchJob", "GridSummary", "plan_grid", "plan_rows", "run_grid", "execute_jobs"]


@dataclass
class BenchJob:
    """One training run of the grid.

    Attributes:
        label: human-readable name, e.g. ``"crt seed 1 stage 2"``.
        out_dir: its run directory.
        config: its configuration, or ``None`` when it could not be built (see ``error``).
        requires: run directory that must finish first (a second stage's first stage).
        error: why the config could not be built.
    """

    label: str
    out_dir: Path
    config: Config | None
    requires: Path | None = None
    error: str | None = None


@dataclass
class GridSummary:
    """What a grid invocation did: run directories trained, skipped (already finished), failed."""

    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rows: list[ResultRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _shares_first_stage(two_stage: Preset, one_stage: Preset) -> bool:
    """True when ``one_stage``'s run is exactly ``two_stage``'s first stage."""
    first_derived = two_stage.derived[0] if two_stage.derived else ()
    other_derived = one_stage.derived[0] if one_stage.derived else ()
    return (
        not one_stage.two_stage
        and one_stage.resets == two_stage.resets
        and one_stage.stages[0] == two_stage.stages[0]
        and tuple(first_derived) == tuple(other_derived)
    )


def _job(
    label: str,
    out_dir: Path,
    preset: Preset,
    stage: int,
    source: str | Path | None,
    before: Sequence[str],
    after: Sequence[str],
    requires: Path | None = None,
) -> BenchJob:
    """The job of ``preset``'s ``stage``; a config that does not build becomes the job's error."""
    try:
        return BenchJob(label, out_dir, preset_config(preset, stage, source, before, after), requires)
    except (ValueError, FileNotFoundError) as error:  # ConfigError is a ValueError
        return BenchJob(label, out_dir, None, requires, error=str(error))


def plan_grid(
    config_source: str | Path | None,
    methods: Sequence[str] | str,
    seeds: int,
    out_dir: str | Path,
    overrides: Sequence[str] = (),
    stage2_overrides: Sequence[str] = (),
) -> list[BenchJob]:
    """The grid's runs in execution order (seed-major, then the given method order).

    Args:
        config_source: base YAML (path or packaged name; ``None`` = the default config).
        methods: preset names (list or comma-separated).
        seeds: number of seeds; run ``k`` uses ``train.seed=k``.
        out_dir: the bench directory.
        overrides: ``KEY=VALUE`` for every run (a preset's own keys win).
        stage2_overrides: ``KEY=VALUE`` applied last to second stages (e.g. their epochs).
    """
    presets = get_presets(list(methods) if not isinstance(methods, str) else methods)
    return plan_rows(config_source, presets, seeds, out_dir, overrides, stage2_overrides)


def plan_rows(
    config_source: str | Path | None,
    presets: Sequence[Preset],
    seeds: int,
    out_dir: str | Path,
    overrides: Sequence[str] = (),
    stage2_overrides: Sequence[str] = (),
) -> list[BenchJob]:
    """As :func:`plan_grid`, for rows given as :class:`Preset` objects (methods or variants)."""
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    out_dir = Path(out_dir).resolve()
    jobs: list[BenchJob] = []
    planned: set[Path] = set()

    def add(job: BenchJob) -> None:
        if job.out_dir not in planned:
            planned.add(job.out_dir)
            jobs.append(job)

    for seed in range(seeds):
        seed_override = [f"train.seed={seed}"]
        for preset in presets:
            seed_dir = out_dir / preset.name / f"seed{seed}"
            if not preset.two_stage:
                add(_job(f"{preset.name} seed {seed}", seed_dir, preset, 0, config_source, overrides, seed_override))
                continue
            reused = next((other for other in presets if _shares_first_stage(preset, other)), None)
            if reused is not None:
                first_dir = out_dir / reused.name / f"seed{seed}"
                add(_job(f"{reused.name} seed {seed}", first_dir, reused, 0, config_source, overrides, seed_override))
            else:
                first_dir = seed_dir / "stage1"
                add(_job(f"{preset.name} seed {seed} stage 1", first_dir, preset, 0, config_source, overrides,
                         seed_override))
            second_after = [*seed_override, f"finetune.checkpoint={first_dir / 'last.pt'}", *stage2_overrides]
            add(_job(f"{preset.name} seed {seed} stage 2", seed_dir / "stage2", preset, 1, config_source, overrides,
                     second_after, requires=first_dir))
    return jobs


class _BenchLog:
    """Progress lines on stdout and appended to ``DIR/bench.log`` (by the main process only)."""

    def __init__(self, out_dir: Path, echo: bool, enabled: bool) -> None:
        self.path = out_dir / "bench.log"
        self.echo = echo
        self.enabled = enabled

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        if self.echo:
            print(f"[bench] {message}", flush=True)
        self.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def append(self, text: str) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(text)


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_same_config(job: BenchJob) -> None:
    """Refuse to skip or resume a run directory trained with another configuration."""
    saved = job.out_dir / "config.yaml"
    if not saved.exists() or job.config is None:
        return
    raw = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    try:  # a section added since that run was trained compares as its defaults
        raw = config_to_dict(build_config(raw, str(saved)))
    except ConfigError:
        pass  # a key that no longer exists: compared as saved, so it shows as differing
    previous = _flatten(raw)
    current = _flatten(config_to_dict(job.config))
    differing = sorted(key for key in previous.keys() | current.keys() if previous.get(key) != current.get(key))
    if differing:
        raise ValueError(
            f"{job.out_dir} holds a run with a different configuration (keys {differing}); "
            "use another --out or delete that run directory"
        )


def run_grid(
    config_source: str | Path | None,
    methods: Sequence[str] | str,
    seeds: int,
    out_dir: str | Path,
    overrides: Sequence[str] = (),
    stage2_overrides: Sequence[str] = (),
    callbacks: Sequence[EpochCallback] = (),
    echo: bool = True,
) -> GridSummary:
    """Train the grid's unfinished runs, then write the result tables of all finished runs.

    Arguments as :func:`plan_grid`; ``callbacks`` go to every run's trainer; ``echo`` prints the
    progress lines (they are always appended to ``DIR/bench.log``).  Exceptions that are not
    errors (``KeyboardInterrupt``) stop the grid: rerunning resumes it.
    """
    out_dir = Path(out_dir).resolve()
    jobs = plan_grid(config_source, methods, seeds, out_dir, overrides, stage2_overrides)
    return execute_jobs(
        jobs, out_dir, f"methods {methods} x {seeds} seed(s)", lambda: write_results(out_dir), callbacks, echo
    )


def execute_jobs(
    jobs: Sequence[BenchJob],
    out_dir: Path,
    what: str,
    write_tables: Callable[[], list[ResultRow]],
    callbacks: Sequence[EpochCallback] = (),
    echo: bool = True,
    before: Callable[[], None] | None = None,
) -> GridSummary:
    """Train the unfinished ``jobs`` in order, then ``write_tables()`` (main process only).

    ``what`` describes the grid in the log; ``before()`` runs on the main process once the
    bench directory exists (e.g. to save the experiment's description there).
    """
    # Under torchrun the grid joins the process group once and keeps it for all its runs (a run
    # that does not own the group leaves it open); every process walks the same grid and only the
    # main one logs and writes the tables.
    device = next((job.config.train.device for job in jobs if job.config is not None), "auto")
    context, _ = init_distributed(device)
    try:
        if context.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            if before is not None:
                before()
        context.barrier()
        log = _BenchLog(out_dir, echo, enabled=context.is_main)
        summary = GridSummary()
        log(f"grid: {len(jobs)} run(s) for {what} in {out_dir}")
        failed_dirs: set[Path] = set()
        for index, job in enumerate(jobs, start=1):
            failure = _run_job(job, f"[{index}/{len(jobs)}] {job.label}", out_dir, failed_dirs, callbacks, log, summary)
            if failure is not None:
                summary.failed[str(job.out_dir.relative_to(out_dir))] = failure
                failed_dirs.add(job.out_dir)
            context.barrier()
        if context.is_main:
            try:
                summary.rows = write_tables()
                log(f"wrote {out_dir / 'results.csv'}, results.md and results.png ({len(summary.rows)} run(s))")
            except FileNotFoundError as error:
                log(f"no tables written: {error}")
        log(
            f"summary: {len(summary.trained)} trained, {len(summary.skipped)} skipped (finished earlier), "
            f"{len(summary.failed)} failed"
            + "".join(f"\n  FAILED {name}: {why}" for name, why in summary.failed.items())
        )
    except BaseException:
        context.close(failed=True)
        raise
    context.close()
    return summary


def _run_job(
    job: BenchJob,
    prefix: str,
    out_dir: Path,
    failed_dirs: set[Path],
    callbacks: Sequence[EpochCallback],
    log: _BenchLog,
    summary: GridSummary,
) -> str | None:
    """Skip, resume or train ``job``; the reason when it failed, else ``None``."""
    relative = str(job.out_dir.relative_to(out_dir))
    if job.requires is not None and job.requires in failed_dirs:
        reason = f"not started: its first stage {job.requires.relative_to(out_dir)} failed"
        log(f"{prefix}: {reason}")
        return reason
    try:
        if job.error is not None:
            raise ValueError(job.error)
        _check_same_config(job)
        if (job.out_dir / "metrics.json").exists():
            summary.skipped.append(relative)
            log(f"{prefix}: finished earlier, skipped")
            return None
        last = job.out_dir / "last.pt"
        resume = last.exists() or previous_path(last).exists()
        log(f"{prefix}: {'resuming' if resume else 'training'} in {relative}")
        started = time.perf_counter()
        result = train(job.config, job.out_dir, resume=resume, callbacks=callbacks)
        log(f"{prefix}: done in {time.perf_counter() - started:.1f}s, test top-1 {result['test']['top1']:.1f}")
        summary.trained.append(relative)
        return None
    except TrainingInterrupted as stopped:  # a stop signal stops the whole grid, resumable
        log(f"{prefix}: {stopped}")
        raise
    except Exception as error:  # a failing run must not stop the grid
        log(f"{prefix}: FAILED: {type(error).__name__}: {error}")
        log.append(traceback.format_exc())
        return f"{type(error).__name__}: {error}"
