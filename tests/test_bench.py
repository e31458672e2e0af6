"""`shapmix bench`: presets, the resumable grid runner, and the result tables."""

from __future__ import annotations

import csv
import json
import statistics

import pytest
import yaml
from helpers import make_tiny_dataset, tiny_overrides

from shapmix.bench.presets import PRESETS, preset_config
from shapmix.bench.runner import plan_grid, run_grid
from shapmix.cli import main

CONTRACT_NAMES = [
    "ce", "bs", "focal", "cb", "ldam_drw", "ib", "ros", "cbs", "mixup", "cutmix",
    "remix_drw", "stmix", "shapmix", "crt", "bs_maxnorm", "glmc",
    "paco", "bcl",
    "skelemix", "skelemixclr", "brl",
    "frhead", "fsa", "ride",
]


class GridInterrupted(BaseException):
    """Stands for Ctrl-C: not an error of one run, so it stops the whole grid."""


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("bench_data") / "tiny")


def bench_overrides(tiny_data):
    return tiny_overrides(tiny_data, epochs=1) + ["log.plots=false", "train.threads=1"]


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_every_preset_builds_a_valid_config(name):
    preset = PRESETS[name]
    first = preset_config(preset, 0, None, ["schedule.epochs=20"])
    assert first.finetune.kind == "none"
    if name == "ldam_drw":
        assert (first.loss.name, first.loss.drw_epoch) == ("ldam", 16)  # Cao et al.: 160 of 200
        assert first.model.args["classifier"] == "cosine"  # the normalised head LDAM is meant for
    if name == "remix_drw":
        assert (first.method.name, first.loss.drw_epoch) == ("remix", 16)
    if name == "ib":
        assert first.loss.ib_start_epoch == 10  # Park et al.: 100 of 200
    if preset.two_stage:
        second = preset_config(preset, 1, None, ["schedule.epochs=20"], ["finetune.checkpoint=stage1/last.pt"])
        if name == "ride":  # its router stage: Wang et al.'s EA configs
            assert (second.finetune.kind, second.method.name, second.schedule.epochs) == ("ride_router", "ride", 5)
            assert second.model == first.model and first.model.ride_experts == 3
        else:
            assert second.finetune.kind in ("crt", "maxnorm", "classifier") and second.schedule.epochs == 10
    else:
        # every one-stage preset states its whole method: the default config's Shap-Mix never leaks
        assert first.method.name != "shapmix" or name == "shapmix"
    assert list(PRESETS) == CONTRACT_NAMES


def test_crt_reuses_the_ce_run_of_the_grid_as_its_first_stage(tmp_path):
    jobs = plan_grid(None, "crt,ce", 1, tmp_path)
    assert [job.out_dir.relative_to(tmp_path).as_posix() for job in jobs] == ["ce/seed0", "crt/seed0/stage2"]
    assert jobs[1].config.finetune.checkpoint == str(tmp_path / "ce" / "seed0" / "last.pt")
    alone = plan_grid(None, "crt", 1, tmp_path)
    assert [job.out_dir.relative_to(tmp_path).as_posix() for job in alone] == ["crt/seed0/stage1", "crt/seed0/stage2"]


def test_grid_writes_one_row_per_run_and_mean_std_tables(tiny_data, tmp_path, capsys):
    out = tmp_path / "bench"
    summary = run_grid(None, "ce,crt", 2, out, bench_overrides(tiny_data), ["schedule.epochs=1"], echo=False)
    assert summary.ok and len(summary.trained) == 4  # ce x 2 seeds, crt stage 2 x 2 seeds
    for seed in (0, 1):
        assert yaml.safe_load((out / "ce" / f"seed{seed}" / "config.yaml").read_text())["train"]["seed"] == seed
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["method"], row["seed"]) for row in rows] == [("ce", "0"), ("ce", "1"), ("crt", "0"), ("crt", "1")]
    for row in rows:
        run_dir = out / row["method"] / f"seed{row['seed']}" / ("stage2" if row["method"] == "crt" else "")
        test = json.loads((run_dir / "metrics.json").read_text())["test"]
        assert float(row["overall"]) == pytest.approx(test["top1"])
        assert float(row["few"]) == pytest.approx(test["few"])
    ce_time = [float(row["train_seconds"]) for row in rows if row["method"] == "ce"]
    crt_stage2_time = sum(json.loads(line)["seconds"] for line in (out / "crt/seed0/stage2/metrics.jsonl").read_text().splitlines())
    assert float(rows[2]["train_seconds"]) == pytest.approx(ce_time[0] + crt_stage2_time)  # both stages count
    table = (out / "results.md").read_text()
    ce_overall = [float(row["overall"]) for row in rows if row["method"] == "ce"]
    expected = f"{statistics.mean(ce_overall):.1f} ± {statistics.stdev(ce_overall):.1f}"
    ce_line = next(line for line in table.splitlines() if line.startswith("| ce |"))
    assert expected in ce_line
    assert (out / "results.png").stat().st_size > 0
    # --collect rebuilds the same tables from the finished runs
    before = {name: (out / name).read_text() for name in ("results.csv", "results.md")}
    for name in before:
        (out / name).unlink()
    assert main(["bench", "--collect", str(out)]) == 0
    assert {name: (out / name).read_text() for name in before} == before
    assert "rebuilt" in capsys.readouterr().out


def test_rerun_skips_finished_runs_and_resumes_an_interrupted_one(tiny_data, tmp_path):
    out = tmp_path / "bench"
    overrides = tiny_overrides(tiny_data, epochs=2) + ["log.plots=false", "train.threads=1"]

    def interrupt_bs_after_its_first_epoch(trainer, epoch, record):
        if trainer.out_dir.parent.name == "bs" and epoch == 0:
            raise GridInterrupted

    with pytest.raises(GridInterrupted):
        run_grid(None, "ce,bs", 1, out, overrides, callbacks=[interrupt_bs_after_its_first_epoch], echo=False)
    finished = out / "ce" / "seed0" / "metrics.json"
    stamp = finished.stat().st_mtime_ns
    assert (out / "bs" / "seed0" / "last.pt").exists() and not (out / "bs" / "seed0" / "metrics.json").exists()

    summary = run_grid(None, "ce,bs", 1, out, overrides, echo=False)
    assert summary.skipped == ["ce/seed0"] and summary.trained == ["bs/seed0"]
    assert finished.stat().st_mtime_ns == stamp, "a finished run was trained again"
    epochs = [json.loads(line)["epoch"] for line in (out / "bs/seed0/metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2], "the interrupted run restarted instead of resuming"
    assert "resumed from" in (out / "bs/seed0/train.log").read_text()

    # a finished run trained with other settings is never silently reused
    changed = run_grid(None, "ce", 1, out, overrides + ["optim.lr=0.05"], echo=False)
    assert "different configuration" in changed.failed["ce/seed0"] and "optim.lr" in changed.failed["ce/seed0"]


def test_a_failing_run_is_reported_and_the_grid_goes_on(tiny_data, tmp_path, capsys):
    out = tmp_path / "bench"
    other_model = "model.args={base_channels: 4, num_blocks: 3}"  # the second stage cannot load stage 1
    argv = ["bench", "--methods", "ce,crt", "--seeds", "1", "--out", str(out), *bench_overrides(tiny_data),
            "--stage2", "schedule.epochs=1", "--stage2", other_model]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "FAILED crt/seed0/stage2" in printed and "model config" in printed
    assert (out / "ce" / "seed0" / "metrics.json").exists()
    with open(out / "results.csv", newline="") as handle:
        assert [row["method"] for row in csv.DictReader(handle)] == ["ce"]


def test_unknown_method_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "--methods", "ce,nope", "--out", str(tmp_path)]) == 2
    assert "unknown method(s) ['nope']" in capsys.readouterr().err


def test_overrides_may_follow_the_options_of_a_command():
    from shapmix.cli import build_parser, parse_arguments

    parser = build_parser()
    args = parse_arguments(parser, ["bench", "--methods", "ce", "data.window=8", "--seeds", "2", "schedule.epochs=2"])
    assert (args.methods, args.seeds, args.overrides) == ("ce", 2, ["data.window=8", "schedule.epochs=2"])
    args = parse_arguments(parser, ["train", "schedule.epochs=3", "--out", "runs/x", "optim.lr=0.5"])
    assert args.overrides == ["schedule.epochs=3", "optim.lr=0.5"]
    with pytest.raises(SystemExit):  # not an override: still an error
        parse_arguments(parser, ["bench", "--methods", "ce", "--seeds", "2", "--no-such-option"])
