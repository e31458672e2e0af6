"""Experiment files: a base run and the grid of runs one table of a paper compares.

An experiment file is an ordinary run config (every section validated by
:class:`shapmix.config.Config`; ``shapmix train --config FILE`` trains that base run) plus an
``experiment:`` block (:class:`ExperimentSpec`) naming the rows of the table::

    name: ltntu60
    data: {path: data/ntu60_xsub, train_split: NTU60_xsub_exp_100, ...}
    ...                                   # the base run: model, optim, schedule, loss, method
    experiment:
      title: "Shap-Mix paper, Table 12: sampling temperature"
      num_classes: 60                     # the dataset must have 60 classes (checked first)
      seeds: 1
      methods: [ce, bs]                   # bench presets: each states its whole method
      variants:                           # the base run with some keys changed
        tau0.1: [method.tau=0.1]
        tau0.5: [method.tau=0.5]
      columns:                            # optional: the whole grid once per column
        IF10: [data.train_split=NTU120_xsub_exp_10]
      ensembles:                          # optional: rows' test scores fused per seed
        2s: {joint: 1.0, bone: 1.0}

``shapmix bench --experiment NAME|FILE --out DIR [KEY=VALUE ...]`` trains every row x seed (x
column) as an ordinary run, resumably, in ``DIR[/COLUMN]/ROW/seedK`` and writes the result
tables of :mod:`shapmix.bench.report` (rows = methods, variants, ensembles).  The user's
``KEY=VALUE`` overrides (e.g. ``data.path=...``) apply to every run; a column's and a row's own
keys win over them, because they define the table.
"""

from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..config import EXPERIMENT_KEY, Config, load_config, packaged_configs
from ..data.format import load_dataset
from ..engine.ensemble import ensemble_runs
from ..engine.trainer import EpochCallback
from ..errors import ConfigError
from .presets import PRESETS, Preset, get_presets, preset_config
from .report import ResultRow, collect_rows, run_result_dir, write_tables
from .runner import BenchJob, GridSummary, execute_jobs, plan_rows

__all__ = [
    "ExperimentSpec",
    "Experiment",
    "EnsembleSpec",
    "load_experiment",
    "experiment_from_dict",
    "packaged_experiments",
    "plan_experiment",
    "check_datasets",
    "run_experiment",
    "collect_experiment",
    "row_configs",
    "write_experiment_results",
    "SAVED_EXPERIMENT",
]

# The experiment as run, saved in the bench directory so that --collect can rebuild its tables.
SAVED_EXPERIMENT = "experiment.yaml"
# Row, column and ensemble labels name directories: letters, digits and . _ + - only.
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _check_label(label: str, what: str) -> str:
    if not LABEL_PATTERN.match(label):
        raise ValueError(f"{what} label {label!r} must start with a letter or digit and use only letters, digits, . _ + -")
    return label


def _check_overrides(items: Sequence[str], where: str) -> None:
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{where}: {item!r} must look like section.key=value")


class ExperimentSpec(BaseModel):
    """The ``experiment:`` block of an experiment file: the rows (and columns) of one table."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(description="what the grid reproduces, e.g. 'Shap-Mix paper, Table 12: temperature'")
    num_classes: int | None = Field(
        None, ge=1, description="classes the dataset must have, checked before training (NTU60: 60); null = any"
    )
    layout: str | None = Field(None, description="joint layout the dataset must have (e.g. ntu25); null = any")
    seeds: int = Field(1, ge=1, description="every row runs with train.seed = 0..seeds-1 (bench --seeds overrides)")
    methods: list[str] = Field(
        default_factory=list,
        description="bench presets (shapmix bench --list) as rows, in order; each starts from the base "
        "run with its own loss, mixing, sampler and stages",
    )
    variants: dict[str, list[str]] = Field(
        default_factory=dict,
        description="rows after the methods: label -> KEY=VALUE overrides of the base run",
    )
    columns: dict[str, list[str]] = Field(
        default_factory=dict,
        description="the whole grid once per column: label -> KEY=VALUE overrides (e.g. each imbalance "
        "factor's long-tailed split); empty = one grid",
    )
    stage2: list[str] = Field(
        default_factory=list, description="KEY=VALUE overrides of every second stage (two-stage methods)"
    )
    ensembles: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="extra rows: label -> {row: weight}; the rows' test logits summed with these weights, "
        "per seed (multi-stream fusion)",
    )

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: list[str]) -> list[str]:
        if methods:  # an experiment may consist of variants only
            get_presets(methods)  # unknown or repeated names are errors
        return methods

    @model_validator(mode="after")
    def _check_rows(self) -> "ExperimentSpec":
        if not self.methods and not self.variants:
            raise ValueError("an experiment needs at least one row: methods and/or variants")
        for label, overrides in self.variants.items():
            _check_label(label, "variant")
            _check_overrides(overrides, f"variant {label!r}")
            if label in PRESETS:
                raise ValueError(f"variant label {label!r} is a method preset's name; choose another label")
        for label, overrides in self.columns.items():
            _check_label(label, "column")
            _check_overrides(overrides, f"column {label!r}")
        _check_overrides(self.stage2, "stage2")
        rows = set(self.methods) | set(self.variants)
        for label, weights in self.ensembles.items():
            _check_label(label, "ensemble")
            if label in rows:
                raise ValueError(f"ensemble label {label!r} is also a row's label")
            missing = sorted(set(weights) - rows)
            if missing:
                raise ValueError(f"ensemble {label!r} fuses unknown row(s) {missing}; rows: {sorted(rows)}")
            if len(weights) < 2 or any(weight <= 0 for weight in weights.values()):
                raise ValueError(f"ensemble {label!r} needs at least two rows with positive weights")
        return self


@dataclass(frozen=True)
class EnsembleSpec:
    """An ensemble row of the tables (described like a method)."""

    name: str
    weights: dict[str, float]

    @property
    def description(self) -> str:
        return "test logits fused: " + " + ".join(f"{weight:g} x {row}" for row, weight in self.weights.items())

    @property
    def reference(self) -> str:
        return "multi-stream fusion of this grid's rows"


@dataclass(frozen=True)
class Experiment:
    """A loaded experiment file.

    Attributes:
        name: the packaged name (``paper/table12-temperature``) or the file path given.
        path: the file; it is also the base run config of every row.
        spec: its validated ``experiment:`` block.
    """

    name: str
    path: Path
    spec: ExperimentSpec

    @property
    def rows(self) -> list[Preset]:
        """Every row as a :class:`Preset`: the methods, then the variants of the base run."""
        variants = [
            Preset(
                name=label,
                description="the base run" + (" with " + ", ".join(overrides) if overrides else ""),
                reference=self.spec.title,
                stages=(tuple(overrides),),
                resets=(),
            )
            for label, overrides in self.spec.variants.items()
        ]
        return [PRESETS[name] for name in self.spec.methods] + variants

    @property
    def ensembles(self) -> list[EnsembleSpec]:
        return [EnsembleSpec(label, dict(weights)) for label, weights in self.spec.ensembles.items()]

    def select(self, only: Sequence[str] | str | None) -> list[Preset]:
        """The rows named in ``only`` (list or comma-separated; ``None`` = all), in table order."""
        rows = self.rows
        if only is None:
            return rows
        names = [name.strip() for name in only.split(",")] if isinstance(only, str) else list(only)
        names = [name for name in names if name]
        unknown = sorted(set(names) - {row.name for row in rows})
        if unknown or not names:
            raise ValueError(f"{self.name} has no row(s) {unknown or names}; rows: {[row.name for row in rows]}")
        return [row for row in rows if row.name in names]


def packaged_experiments() -> dict[str, Path]:
    """Packaged configs that are experiment files (the paper's tables): name -> path."""
    found = {}
    for name, path in packaged_configs().items():
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if isinstance(content, dict) and EXPERIMENT_KEY in content:
            found[name] = path
    return found


def _format_errors(error: ValidationError, where: str) -> str:
    lines = [f"invalid experiment block ({where}):"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(block)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = f"unknown key; allowed: {sorted(ExperimentSpec.model_fields)}"
        lines.append(f"  {EXPERIMENT_KEY}.{key}: {message}")
    return "\n".join(lines)


def experiment_from_dict(block: Any, name: str, path: Path) -> Experiment:
    """An :class:`Experiment` from an ``experiment:`` mapping (as in the file)."""
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: {EXPERIMENT_KEY}: must be a mapping (title, methods, variants, ...)")
    try:
        spec = ExperimentSpec.model_validate(block)
    except ValidationError as error:
        raise ConfigError(_format_errors(error, str(path))) from None
    return Experiment(name, path, spec)


def load_experiment(source: str | Path) -> Experiment:
    """Load and validate an experiment file (a path or a packaged name such as ``paper/table1-ltntu60``).

    The base run is validated as a config too; every row's config is validated when the grid is
    planned (:func:`plan_experiment`).
    """
    known = packaged_configs()
    path = known.get(str(source), Path(source))
    if not path.exists():
        experiments = sorted(packaged_experiments())
        raise ConfigError(f"{source!r} is neither an experiment file nor a packaged experiment; packaged: {experiments}")
    content = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(content, dict) or EXPERIMENT_KEY not in content:
        raise ConfigError(
            f"{path} has no '{EXPERIMENT_KEY}:' block: it is a run config (use shapmix train --config, "
            "or shapmix bench --config FILE --methods ...)"
        )
    experiment = experiment_from_dict(content[EXPERIMENT_KEY], str(source), path)
    load_config(path)
    return experiment


def plan_experiment(
    experiment: Experiment,
    out_dir: str | Path,
    overrides: Sequence[str] = (),
    stage2_overrides: Sequence[str] = (),
    seeds: int | None = None,
    only: Sequence[str] | str | None = None,
) -> list[BenchJob]:
    """The experiment's runs in execution order: column by column, then seed-major as a grid.

    Args:
        experiment: the loaded file.
        out_dir: the bench directory; runs go to ``DIR[/COLUMN]/ROW/seedK``.
        overrides: the user's ``KEY=VALUE`` for every run (columns and rows win over them).
        stage2_overrides: applied last to second stages, after the file's ``stage2``.
        seeds: number of seeds; ``None`` = the file's.
        only: a subset of rows (``None`` = all).
    """
    out_dir = Path(out_dir).resolve()
    rows = experiment.select(only)
    spec = experiment.spec
    columns = list(spec.columns.items()) or [(None, [])]
    jobs: list[BenchJob] = []
    for column, column_overrides in columns:
        jobs += plan_rows(
            experiment.path,
            rows,
            seeds or spec.seeds,
            out_dir / column if column else out_dir,
            [*overrides, *column_overrides],
            [*spec.stage2, *stage2_overrides],
        )
    return jobs


def check_datasets(jobs: Sequence[BenchJob], experiment: Experiment) -> None:
    """Refuse a dataset whose classes or layout differ from what the experiment states."""
    spec = experiment.spec
    if spec.num_classes is None and spec.layout is None:
        return
    paths = sorted({job.config.data.path for job in jobs if job.config is not None and job.config.data.path})
    for path in paths:
        dataset = load_dataset(path)
        if spec.num_classes is not None and dataset.num_classes != spec.num_classes:
            raise ConfigError(
                f"{experiment.name} expects a dataset with {spec.num_classes} classes ({spec.title}); "
                f"data.path={path} has {dataset.num_classes}: set data.path to the right dataset"
            )
        if spec.layout is not None and dataset.layout.name != spec.layout:
            raise ConfigError(
                f"{experiment.name} expects the {spec.layout} joint layout; data.path={path} has {dataset.layout.name}"
            )


def _fuse(bench_dir: Path, ensemble: EnsembleSpec, rows: Sequence[Preset], finished: Sequence[ResultRow]) -> list[ResultRow]:
    """One row per seed at which every fused row finished: metrics of the weighted logit sum
    (:func:`~shapmix.engine.ensemble.ensemble_runs`, what ``shapmix ensemble`` computes)."""
    by_name = {row.name: row for row in rows}
    done = {(row.method, row.seed): row for row in finished}
    seeds = sorted({row.seed for row in finished})
    fused_rows: list[ResultRow] = []
    members = list(ensemble.weights)
    for seed in seeds:
        if any((member, seed) not in done or member not in by_name for member in members):
            continue
        run_dirs = [run_result_dir(bench_dir, by_name[member], seed) for member in members]
        metrics = ensemble_runs(run_dirs, [ensemble.weights[member] for member in members]).metrics
        fused_rows.append(
            ResultRow(
                method=ensemble.name,
                seed=seed,
                overall=metrics.top1,
                many=metrics.many,
                medium=metrics.medium,
                few=metrics.few,
                class_mean=metrics.class_mean,
                train_seconds=sum(done[(member, seed)].train_seconds for member in members),
            )
        )
    return fused_rows


def _grid_results(bench_dir: Path, experiment: Experiment, rows: Sequence[Preset]) -> list[ResultRow]:
    finished = collect_rows(bench_dir, rows)
    if not finished:
        return []
    table = list(finished)
    for ensemble in experiment.ensembles:
        table += _fuse(bench_dir, ensemble, rows, finished)
    write_tables(bench_dir, table, [*rows, *experiment.ensembles])
    return table


def _format_columns(per_column: dict[str, list[ResultRow]], order: Sequence[str], title: str) -> str:
    """Overall accuracy, row x column, mean ± std over seeds."""
    columns = list(per_column)
    lines = [
        f"{title}",
        "",
        "Overall test accuracy (%), mean ± sample standard deviation over seeds; every column's "
        "full table is in COLUMN/results.md.",
        "",
        "| row | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name in order:
        cells = []
        for column in columns:
            values = [row.overall for row in per_column[column] if row.method == name]
            if not values:
                cells.append("n/a")
            elif len(values) == 1:
                cells.append(f"{values[0]:.1f}")
            else:
                cells.append(f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}")
        if any(cell != "n/a" for cell in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_experiment_results(bench_dir: str | Path, experiment: Experiment) -> list[ResultRow]:
    """The tables of an experiment's finished runs, every row that has some (per column, and a
    row x column summary), whichever invocation trained them."""
    bench_dir = Path(bench_dir)
    rows = experiment.rows
    if not experiment.spec.columns:
        table = _grid_results(bench_dir, experiment, rows)
        if not table:
            raise FileNotFoundError(f"no finished runs (DIR/ROW/seedK/metrics.json) under {bench_dir}")
        return table
    per_column = {
        column: _grid_results(bench_dir / column, experiment, rows)
        for column in experiment.spec.columns
        if (bench_dir / column).is_dir()
    }
    per_column = {column: table for column, table in per_column.items() if table}
    if not per_column:
        raise FileNotFoundError(f"no finished runs (DIR/COLUMN/ROW/seedK/metrics.json) under {bench_dir}")
    names = [row.name for row in rows] + [ensemble.name for ensemble in experiment.ensembles]
    (bench_dir / "results.md").write_text(_format_columns(per_column, names, experiment.spec.title), encoding="utf-8")
    with open(bench_dir / "results.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        row_fields = [item.name for item in fields(ResultRow)]
        writer.writerow(["column", *row_fields])
        for column, table in per_column.items():
            for result in table:
                values = asdict(result)
                writer.writerow([column, *("" if values[key] is None else values[key] for key in row_fields)])
    return [result for table in per_column.values() for result in table]


def _save_experiment(bench_dir: Path, experiment: Experiment) -> None:
    saved = {
        "name": experiment.name,
        "source": str(experiment.path),
        EXPERIMENT_KEY: experiment.spec.model_dump(mode="json"),
    }
    (bench_dir / SAVED_EXPERIMENT).write_text(yaml.safe_dump(saved, sort_keys=False), encoding="utf-8")


def collect_experiment(bench_dir: str | Path) -> list[ResultRow]:
    """Rebuild the tables of a bench directory written by :func:`run_experiment`."""
    bench_dir = Path(bench_dir)
    saved = yaml.safe_load((bench_dir / SAVED_EXPERIMENT).read_text(encoding="utf-8"))
    experiment = experiment_from_dict(saved[EXPERIMENT_KEY], saved["name"], Path(saved["source"]))
    return write_experiment_results(bench_dir, experiment)


def run_experiment(
    source: str | Path,
    out_dir: str | Path,
    overrides: Sequence[str] = (),
    stage2_overrides: Sequence[str] = (),
    seeds: int | None = None,
    only: Sequence[str] | str | None = None,
    callbacks: Sequence[EpochCallback] = (),
    echo: bool = True,
) -> GridSummary:
    """Train an experiment's unfinished runs, then write its tables (see :func:`plan_experiment`).

    A row whose config does not validate fails alone (logged, the grid goes on); a dataset
    whose classes or layout contradict the file stops everything before training.
    """
    experiment = load_experiment(source)
    out_dir = Path(out_dir).resolve()
    jobs = plan_experiment(experiment, out_dir, overrides, stage2_overrides, seeds, only)
    check_datasets(jobs, experiment)

    return execute_jobs(
        jobs,
        out_dir,
        f"{experiment.name} ({experiment.spec.title})",
        # every row's table, not only this invocation's: processes training disjoint rows into
        # one directory each leave the whole table
        lambda: write_experiment_results(out_dir, experiment),
        callbacks,
        echo,
        before=lambda: _save_experiment(out_dir, experiment),
    )


def row_configs(experiment: Experiment, overrides: Sequence[str] = ()) -> dict[str, list[Config]]:
    """Every row's validated config per stage (first column), for inspection and tests.

    Two-stage rows get a placeholder ``finetune.checkpoint``; the grid fills in the real one.
    """
    first_column = next(iter(experiment.spec.columns.values()), [])
    before = [*overrides, *first_column]
    configs: dict[str, list[Config]] = {}
    for row in experiment.rows:
        stages = [preset_config(row, 0, experiment.path, before, ["train.seed=0"])]
        if row.two_stage:
            after = ["train.seed=0", "finetune.checkpoint=stage1/last.pt", *experiment.spec.stage2]
            stages.append(preset_config(row, 1, experiment.path, before, after))
        configs[row.name] = stages
    return configs
