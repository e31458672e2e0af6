"""Second stage of decoupled methods: cRT (Kang et al. 2020) and MaxNorm (Alshammari et al. 2022)."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from helpers import make_tiny_dataset, tiny_overrides, train_interrupted_then_resumed

from shapmix.bench.presets import PRESETS, preset_config
from shapmix.config import ConfigError, load_config
from shapmix.engine.checkpoint import load_checkpoint
from shapmix.engine.finetune import MaxNormFinetuning
from shapmix.engine.trainer import Trainer, train

CLASSIFIER_KEYS = ("fc.weight", "fc.bias")
# One thread: two per process oversubscribe the shared CPU cores
QUIET = ["log.plots=false", "train.threads=1"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("finetune_data") / "tiny")


@pytest.fixture(scope="module")
def first_stages(tiny_data, tmp_path_factory):
    """First stages of crt (plain CE) and bs_maxnorm (CE with strong weight decay)."""
    root = tmp_path_factory.mktemp("first_stages")
    runs = {}
    for name in ("crt", "bs_maxnorm"):
        overrides = tiny_overrides(tiny_data, epochs=1) + QUIET
        train(preset_config(PRESETS[name], 0, None, overrides), root / name)
        runs[name] = root / name / "last.pt"
    return runs


def second_stage_config(tiny_data, name, checkpoint, epochs=2, extra=()):
    after = [f"finetune.checkpoint={checkpoint}", f"schedule.epochs={epochs}", *extra]
    return preset_config(PRESETS[name], 1, None, tiny_overrides(tiny_data) + QUIET, after)


def assert_backbone_identical(first: dict, second: dict) -> None:
    """Every parameter and buffer (BN statistics included) except the classifier is bit-identical."""
    assert first.keys() == second.keys()
    for key, value in first.items():
        if key not in CLASSIFIER_KEYS:
            assert torch.equal(value, second[key]), f"{key} changed in the second stage"


def test_crt_trains_only_a_reinitialised_classifier(tiny_data, first_stages, tmp_path):
    config = second_stage_config(tiny_data, "crt", first_stages["crt"])
    assert config.finetune.kind == "crt" and config.data.sampler == "class_balanced"
    out = tmp_path / "crt"
    trainer = Trainer(config, out)
    first = load_checkpoint(first_stages["crt"])["model"]
    # re-initialised: the classifier is not the first stage's, the backbone is
    assert not torch.equal(trainer.model.fc.weight.detach(), first["fc.weight"])
    assert_backbone_identical(first, trainer.model.state_dict())
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(trainer.model.fc.weight), id(trainer.model.fc.bias)}
    initial_classifier = trainer.model.fc.weight.detach().clone()
    trainer.fit()
    trainer.close()
    second = load_checkpoint(out / "last.pt")["model"]
    assert_backbone_identical(first, second)
    assert not torch.equal(second["fc.weight"], initial_classifier), "the classifier did not train"


def test_crt_batches_are_class_balanced(tiny_data, first_stages, tmp_path):
    trainer = Trainer(second_stage_config(tiny_data, "crt", first_stages["crt"]), tmp_path / "crt")
    labels = []
    for epoch in range(40):
        trainer.train_sampler.set_epoch(epoch)
        labels += [batch.label for batch in trainer.train_loader]
    labels = torch.cat(labels)
    trainer.close()
    shares = np.bincount(labels.numpy(), minlength=4) / len(labels)
    # the tiny split has 12/8/5/3 samples per class: instance sampling would give 0.43 .. 0.11
    np.testing.assert_allclose(shares, 0.25, atol=0.05)


def test_maxnorm_bounds_every_class_weight_after_every_step(tiny_data, first_stages, tmp_path):
    config = second_stage_config(tiny_data, "bs_maxnorm", first_stages["bs_maxnorm"])
    assert config.loss.name == "balanced_softmax" and config.optim.weight_decay == 0.1
    trainer = Trainer(config, tmp_path / "maxnorm")
    first = load_checkpoint(first_stages["bs_maxnorm"])["model"]
    norms = first["fc.weight"].norm(dim=1)
    threshold = config.finetune.maxnorm_threshold
    assert trainer.second_stage.radius == pytest.approx(float(norms.min() + threshold * (norms.max() - norms.min())))
    # the classifier starts from the first stage (fine-tuned, not re-initialised)
    assert torch.equal(trainer.model.fc.weight.detach(), first["fc.weight"])
    assert (norms > trainer.second_stage.radius).sum() >= 2, "the constraint must bind for this test to mean anything"
    after_step = trainer.second_stage.after_step
    observed = []

    def checked_after_step(model):
        after_step(model)
        observed.append(float(model.fc.weight.detach().norm(dim=1).max()))

    trainer.second_stage.after_step = checked_after_step
    trainer.fit()
    trainer.close()
    assert len(observed) == config.schedule.epochs * trainer.steps_per_epoch
    assert max(observed) <= trainer.second_stage.radius * (1 + 1e-6)
    assert_backbone_identical(first, load_checkpoint(tmp_path / "maxnorm" / "last.pt")["model"])


def test_maxnorm_projection_scales_only_rows_outside_the_ball():
    layer = torch.nn.Linear(3, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 2.0], [1.0, 0.0, 0.0]]))
    model = torch.nn.Module()
    model.fc = layer
    stage = MaxNormFinetuning.__new__(MaxNormFinetuning)
    stage.radius = 1.5
    bias = layer.bias.detach().clone()
    stage.after_step(model)
    expected = torch.tensor([[0.9, 1.2, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.5], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(layer.weight.detach(), expected)
    assert torch.equal(layer.bias.detach(), bias), "the bias is not constrained"


def test_wrong_or_missing_first_stage_is_a_clear_error(tiny_data, first_stages, tmp_path):
    with pytest.raises(FileNotFoundError, match="finetune.checkpoint=.*does not exist"):
        Trainer(second_stage_config(tiny_data, "crt", tmp_path / "nowhere" / "last.pt"), tmp_path / "a")
    other_model = ["model.args={base_channels: 4, num_blocks: 3}"]
    with pytest.raises(ValueError, match="model config"):
        Trainer(second_stage_config(tiny_data, "crt", first_stages["crt"], extra=other_model), tmp_path / "b")
    with pytest.raises(ConfigError, match="finetune.kind=crt needs finetune.checkpoint"):
        load_config(None, tiny_overrides(tiny_data) + ["finetune.kind=crt"])


def test_interrupted_second_stage_resumes_to_the_same_weights(tiny_data, first_stages, tmp_path):
    config = second_stage_config(tiny_data, "bs_maxnorm", first_stages["bs_maxnorm"], epochs=2)
    train(config, tmp_path / "straight")
    train_interrupted_then_resumed(config, tmp_path / "resumed")
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")["model"]
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key

