import json
from typing import get_args

import numpy as np
import pytest
import torch

from shapmix.cli import main
from shapmix.engine.checkpoint import load_checkpoint
from shapmix.engine.evaluate import evaluate_checkpoint
from shapmix.engine.trainer import Trainer, lr_factor, train
from shapmix.config import MethodConfig, ScheduleConfig
from shapmix.methods import METHOD_BUILDERS

from helpers import assert_resumed_run_matches, assert_same_state, make_tiny_dataset, tiny_config, tiny_overrides


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


def test_run_directory_holds_everything(tiny_data, tmp_path):
    out = tmp_path / "run"
    result = train(tiny_config(tiny_data, extra=["loss.name=balanced_softmax", "data.val_split=val"]), out)
    names = {p.name for p in out.iterdir()}
    assert {"config.yaml", "train.log", "metrics.jsonl", "metrics.json", "test_scores.npz", "last.pt",
            "best.pt", "class_accuracy.png", "training_curves.png"} <= names
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["group_sizes"] == {"many": 1, "medium": 2, "few": 1}
    assert metrics["test"]["num_samples"] == 16
    assert "test_best_val" in metrics
    scores = np.load(out / "test_scores.npz")
    assert scores["logits"].shape == (16, 4) and len(set(scores["names"])) == 16
    top1 = 100 * np.mean(scores["logits"].argmax(1) == scores["labels"])
    assert top1 == pytest.approx(result["test"]["top1"])
    # the checkpoint is loadable without unpickling arbitrary objects
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and "rng" in state and "optimizer" in state


def test_the_run_seed_decides_the_weights(tiny_data, tmp_path):
    # resuming is checked for every method below; here: a run is a function of its seed
    weights = {}
    for name, seed in (("first", 0), ("again", 0), ("other", 1)):
        train(tiny_config(tiny_data, epochs=1, extra=[f"train.seed={seed}"]), tmp_path / name)
        weights[name] = load_checkpoint(tmp_path / name / "last.pt")["model"]
    first, again, other = weights["first"], weights["again"], weights["other"]
    assert first.keys() == again.keys()
    for key in first:
        assert torch.equal(first[key], again[key]), key
    assert any(not torch.equal(first[key], other[key]) for key in first if first[key].is_floating_point())


def test_eval_checkpoint_reproduces_final_metrics(tiny_data, tmp_path):
    out = tmp_path / "run"
    result = train(tiny_config(tiny_data), out)
    metrics = evaluate_checkpoint(out / "last.pt", out / "eval")
    assert metrics.top1 == pytest.approx(result["test"]["top1"])
    assert (out / "eval" / "eval_test.json").exists()


def test_cli_train_eval_and_errors(tiny_data, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", "--out", str(out), *tiny_overrides(tiny_data, epochs=1)]) == 0
    assert "many(" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(out / "last.pt")]) == 0
    assert main(["train", "--out", str(tmp_path / "bad"), "optim.lrr=1"]) == 2
    assert "no key 'lrr' in optim" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "examples:" in capsys.readouterr().out


def test_lr_schedule_warmup_then_steps():
    schedule = ScheduleConfig(epochs=10, warmup_epochs=2, kind="multistep", milestones=[5, 8], gamma=0.1)
    steps = 10
    factors = [lr_factor(s, steps, schedule, 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(1 / 20) and factors[19] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(factors[:19], factors[1:20]))
    assert factors[49] == 1.0 and factors[50] == pytest.approx(0.1) and factors[80] == pytest.approx(0.01)
    cosine = ScheduleConfig(epochs=10, warmup_epochs=0, kind="cosine", min_lr=0.01)
    assert lr_factor(0, steps, cosine, 0.1) == pytest.approx(1.0)
    assert lr_factor(99, steps, cosine, 0.1) == pytest.approx(0.1, abs=2e-3)


def test_cli_synth_writes_a_loadable_dataset_and_rejects_unknown_settings(tmp_path, capsys):
    from shapmix.data.format import load_dataset

    out = tmp_path / "synth"
    assert main(["synth", "--out", str(out), "num_classes=5", "n_max=12", "imbalance_factor=4",
                 "test_per_class=2", "seed=3"]) == 0
    dataset = load_dataset(out)
    assert dataset.class_counts("train").tolist() == [12, 8, 6, 4, 3]
    assert "salient_parts" in dataset.metadata
    assert main(["synth", "--out", str(tmp_path / "bad"), "num_clases=5"]) == 2
    assert "num_clases" in capsys.readouterr().err


# Every method the schema accepts (a new method is covered as soon as it is added there).
METHODS = get_args(MethodConfig.model_fields["name"].annotation)
# GLMC, PaCo, BCL and BRL train with their own losses; RIDE trains experts
METHOD_EXTRA = {
    "glmc": ["loss.name=ce"], "bcl": ["loss.name=ce"], "brl": ["loss.name=ce"],
    # a queue of 20 keys with 3 steps of 8 per epoch wraps around before and after the interruption
    "paco": ["loss.name=ce", "method.paco_queue_size=20", "method.paco_momentum=0.9"],
    "ride": ["model.ride_experts=3"],
}
STATELESS_METHODS = {"none", "ride"}  # RIDE's experts and router are the model's parameters


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_resumes_its_state(tiny_data, tmp_path, method):
    plots = "true" if method == "shapmix" else "false"  # the saliency pictures are checked below
    extra = [f"method.name={method}", "method.warmup_epochs=1", "data.window=16", f"log.plots={plots}"]
    config = tiny_config(tiny_data, epochs=2, extra=extra + METHOD_EXTRA.get(method, []))
    # the resumed run ends exactly where the uninterrupted one does: weights, optimiser, method
    result, expected, interrupted = assert_resumed_run_matches(config, tmp_path)
    full = tmp_path / "full"
    assert np.isfinite(result["test"]["top1"])
    if method not in STATELESS_METHODS:
        with pytest.raises(AssertionError):
            assert_same_state(interrupted["method"], expected["method"])

    state = expected["method"]
    if method == "shapmix":
        assert state["table"]["counts"].sum() > 0  # the saliency table was updated
        assert state["baseline"].shape == (3, 16, 25, 2)
        exported = json.loads((full / "saliency_table.json").read_text())
        assert exported["classes"] == ["class0", "class1", "class2", "class3"]
        assert (full / "saliency_table.csv").exists() and (full / "saliency_heatmap.png").exists()
    elif method in ("glmc", "frhead"):
        assert "heads" in state
    elif method in ("paco", "bcl"):
        assert {"heads", "views"} <= set(state)
        assert state["views"]["epoch"] == 1 and interrupted["method"]["views"]["epoch"] == 0
        if method == "paco":
            assert set(state) == {"heads", "key_encoder", "queue", "views"}
            assert int(interrupted["method"]["queue"]["pointer"]) == 4 and int(state["queue"]["pointer"]) == 8
            at_interruption = interrupted["method"]["key_encoder"]
            assert any(not torch.equal(value, at_interruption[key]) for key, value in state["key_encoder"].items())
    elif method == "fsa":
        assert state["score_counts"].sum() > 0  # its confusion statistics
    elif method not in STATELESS_METHODS:
        assert "mixer" in state


def test_every_method_of_the_schema_has_a_builder():
    assert set(METHOD_BUILDERS) == set(METHODS)


def test_train_split_from_a_name_list_file(tiny_data, tmp_path):
    from shapmix.data.format import load_dataset

    names = load_dataset(tiny_data).splits["train"][:20]
    listing = tmp_path / "subset.txt"
    listing.write_text("\n".join(names) + "\n")
    trainer = Trainer(tiny_config(tiny_data, epochs=1, extra=[f"data.train_split={listing}"]), tmp_path / "run")
    try:
        assert trainer.data.train.names == names
    finally:
        trainer.close()
    listing.write_text("train_c0_000\nnot_a_sample\n")
    with pytest.raises(Exception, match="subset.txt names 1 unknown samples"):
        Trainer(tiny_config(tiny_data, epochs=1, extra=[f"data.train_split={listing}"]), tmp_path / "run2")


def test_tensorboard_events_are_written(tiny_data, tmp_path):
    pytest.importorskip("tensorboard", reason="TensorBoard is an optional extra: pip install 'shapmix[tensorboard]'")
    out = tmp_path / "tb"
    train(tiny_config(tiny_data, epochs=1, extra=["log.tensorboard=true"]), out)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_process_group_teardown_waits_for_every_rank_only_after_success(monkeypatch):
    import torch.distributed as dist

    from shapmix.distributed import DistributedContext

    calls: list[str] = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append("destroy"))
    DistributedContext(rank=1, world_size=2, owns_group=True).close()
    assert calls == ["barrier", "destroy"]
    calls.clear()
    # after an error the peers may never reach the barrier: no collective teardown
    DistributedContext(rank=1, world_size=2, owns_group=True).close(failed=True)
    # a group someone else created is theirs to close
    DistributedContext(rank=1, world_size=2, owns_group=False).close()
    assert calls == []
