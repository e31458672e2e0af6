"""Experiment files: the schema of the ``experiment:`` block, and ``shapmix bench --experiment``."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml
from helpers import make_tiny_dataset, tiny_overrides

from shapmix.bench.experiment import load_experiment, plan_experiment
from shapmix.cli import main
from shapmix.config import ConfigError, load_config
from shapmix.engine.checkpoint import load_checkpoint
from shapmix.engine.evaluate import compute_metrics


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = make_tiny_dataset(tmp_path_factory.mktemp("experiment_data") / "tiny")
    # a second training split standing in for another imbalance factor
    names = (root / "splits" / "train.txt").read_text().split()
    (root / "splits" / "train_half.txt").write_text("\n".join(names[::2]) + "\n")
    return root


def write_experiment(path, block: dict, base_overrides=()):
    """An experiment file: the default config's sections (with overrides) plus ``block``."""
    from shapmix.config import config_to_dict

    base = config_to_dict(load_config(None, list(base_overrides)))
    path.write_text(yaml.safe_dump({**base, "experiment": block}, sort_keys=False))
    return path


def test_block_is_validated_with_readable_errors(tmp_path):
    good = {"title": "t", "methods": ["ce"], "variants": {"tau-low": ["method.tau=0.1"]}}
    assert [row.name for row in load_experiment(write_experiment(tmp_path / "ok.yaml", good)).rows] == ["ce", "tau-low"]
    bad_blocks = {
        "unknown key; allowed": {**good, "colums": {}},
        "unknown method": {**good, "methods": ["ce", "nope"]},
        "listed more than once": {**good, "methods": ["ce", "ce"]},
        "at least one row": {"title": "t"},
        "must start with a letter": {**good, "variants": {"a/b": []}},
        "is a method preset's name": {**good, "variants": {"bs": ["loss.name=ce"]}},
        "must look like section.key=value": {**good, "variants": {"v": ["method.tau"]}},
        "fuses unknown row": {**good, "ensembles": {"2s": {"ce": 1.0, "missing": 1.0}}},
        "positive weights": {**good, "ensembles": {"2s": {"ce": 1.0, "tau-low": 0.0}}},
    }
    for message, block in bad_blocks.items():
        with pytest.raises(ConfigError, match=message):
            load_experiment(write_experiment(tmp_path / "bad.yaml", block))
    plain = tmp_path / "plain.yaml"
    plain.write_text("name: plain\n")
    with pytest.raises(ConfigError, match="no 'experiment:' block"):
        load_experiment(plain)
    # a row whose overrides do not validate fails at planning, naming the key
    broken = load_experiment(write_experiment(tmp_path / "broken.yaml", {**good, "variants": {"v": ["method.tauu=1"]}}))
    (job,) = [job for job in plan_experiment(broken, tmp_path / "out") if "v seed" in job.label]
    assert job.config is None and "tauu" in job.error


def test_variants_start_from_the_base_run_and_methods_from_neutral(tmp_path):
    block = {"title": "t", "methods": ["ce"], "variants": {"low-tau": ["method.tau=0.1"]}, "seeds": 2}
    experiment = load_experiment(write_experiment(tmp_path / "e.yaml", block, ["method.name=shapmix"]))
    jobs = plan_experiment(experiment, tmp_path / "out", ["schedule.epochs=3"])
    by_dir = {job.out_dir.relative_to(tmp_path / "out").as_posix(): job.config for job in jobs}
    assert sorted(by_dir) == ["ce/seed0", "ce/seed1", "low-tau/seed0", "low-tau/seed1"]
    assert by_dir["ce/seed1"].method.name == "none" and by_dir["ce/seed1"].train.seed == 1
    variant = by_dir["low-tau/seed0"]
    assert (variant.method.name, variant.method.tau, variant.schedule.epochs) == ("shapmix", 0.1, 3)
    assert len(plan_experiment(experiment, tmp_path / "out", seeds=1, only="low-tau")) == 1


def test_bench_experiment_runs_columns_ensembles_resumes_and_collects(tiny_data, tmp_path, capsys):
    block = {
        "title": "tiny streams",
        "num_classes": 4,
        "layout": "ntu25",
        "methods": ["ce", "crt"],
        "variants": {"bone": ["data.modality=bone"]},
        "columns": {"full": ["data.train_split=train"], "half": ["data.train_split=train_half"]},
        "stage2": ["schedule.epochs=1"],
        "ensembles": {"2s": {"ce": 1.0, "bone": 0.5}},
    }
    path = write_experiment(tmp_path / "tiny.yaml", block)
    out = tmp_path / "bench"
    args = ["bench", "--experiment", str(path), "--out", str(out),
            *tiny_overrides(tiny_data, epochs=1), "log.plots=false", "train.threads=1"]
    assert main(args) == 0
    for column in ("full", "half"):
        for run in ("ce/seed0", "bone/seed0", "crt/seed0/stage2"):
            assert (out / column / run / "metrics.json").exists()
        config = yaml.safe_load((out / column / "bone" / "seed0" / "config.yaml").read_text())
        assert config["data"]["modality"] == "bone"
        assert config["data"]["train_split"] == {"full": "train", "half": "train_half"}[column]
        with open(out / column / "results.csv", newline="") as handle:
            rows = {row["method"]: row for row in csv.DictReader(handle)}
        assert list(rows) == ["ce", "crt", "bone", "2s"]
        # the fused row is the metrics of 1.0 x ce logits + 0.5 x bone logits
        scores = [np.load(out / column / run / "seed0" / "test_scores.npz") for run in ("ce", "bone")]
        assert (scores[0]["names"] == scores[1]["names"]).all()
        train_counts = load_checkpoint(out / column / "ce" / "seed0" / "last.pt")["train_counts"]
        fused = scores[0]["logits"].astype(np.float64) + 0.5 * scores[1]["logits"]
        expected = compute_metrics(fused, scores[0]["labels"], train_counts, many_threshold=10, few_threshold=4)
        assert float(rows["2s"]["overall"]) == pytest.approx(expected.top1)
        assert float(rows["2s"]["class_mean"]) == pytest.approx(expected.class_mean)
        assert float(rows["2s"]["overall"]) == pytest.approx(100.0 * (fused.argmax(1) == scores[0]["labels"]).mean())
    summary = (out / "results.md").read_text()
    assert "| row | full | half |" in summary and "| 2s |" in summary
    with open(out / "results.csv", newline="") as handle:
        combined = list(csv.DictReader(handle))
    assert {(row["column"], row["method"]) for row in combined} >= {("full", "2s"), ("half", "crt")}

    # a second invocation trains nothing; --collect rebuilds the same tables from the saved experiment
    capsys.readouterr()
    assert main(args) == 0
    assert "0 trained, 6 skipped" in capsys.readouterr().out
    before = (out / "full" / "results.csv").read_text()
    (out / "full" / "results.csv").unlink()
    assert main(["bench", "--collect", str(out)]) == 0
    assert (out / "full" / "results.csv").read_text() == before


def test_two_invocations_with_disjoint_rows_share_one_table(tiny_data, tmp_path):
    # two bench processes (one per core) training disjoint rows into one directory: each leaves
    # the whole table, and --collect rebuilds it with both (it kept only the last one's rows)
    path = write_experiment(tmp_path / "e.yaml", {"title": "t", "num_classes": 4, "methods": ["ce", "bs"]})
    out = tmp_path / "bench"
    common = [*tiny_overrides(tiny_data, epochs=1), "log.plots=false", "train.threads=1"]
    for row in ("ce", "bs"):
        assert main(["bench", "--experiment", str(path), "--out", str(out), "--methods", row, *common]) == 0

    def table_rows() -> list[str]:
        with open(out / "results.csv", newline="") as handle:
            return [row["method"] for row in csv.DictReader(handle)]

    assert table_rows() == ["ce", "bs"]
    (out / "results.csv").unlink()
    assert main(["bench", "--collect", str(out)]) == 0
    assert table_rows() == ["ce", "bs"]


def test_bench_refuses_config_with_experiment_and_the_wrong_dataset(tiny_data, tmp_path, capsys):
    path = write_experiment(tmp_path / "e.yaml", {"title": "t", "num_classes": 60, "methods": ["ce"]})
    assert main(["bench", "--experiment", str(path), "--config", "ntu-lt", "--out", str(tmp_path / "o")]) == 2
    assert "drop --config" in capsys.readouterr().err
    assert main(["bench", "--experiment", str(path), "--out", str(tmp_path / "o"), f"data.path={tiny_data}"]) == 2
    assert "expects a dataset with 60 classes" in capsys.readouterr().err


def test_configs_command_lists_and_shows_the_paper_experiments(capsys):
    assert main(["configs"]) == 0
    listing = capsys.readouterr().out
    assert "paper/table1-ltntu60" in listing and "paper/table13-cost" in listing
    assert main(["configs", "paper/table12-temperature"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["method"]["name"] == "shapmix" and list(shown["experiment"]["variants"])[0] == "tau0.01"
