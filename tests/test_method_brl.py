"""BRL (Liu et al. 2023, shapmix.methods.brl): each branch as the authors' code defines it, on
examples small enough to check by hand, then the method through the engine."""

from __future__ import annotations

import math
import os
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_resumed_run_matches, make_tiny_dataset, tiny_config

from shapmix.bench.presets import PRESETS, preset_config
from shapmix.config import MethodConfig, load_config
from shapmix.engine.checkpoint import load_checkpoint
from shapmix.engine.preemption import TrainingInterrupted
from shapmix.engine.trainer import Trainer, train
from shapmix.errors import ConfigError
from shapmix.methods import build_method
from shapmix.methods.brl import (
    BRLMethod,
    action_aware_loss,
    action_aware_weights,
    lower_body_joints,
    mirror_permutation,
    own_label_share,
    partial_mix,
    random_flip,
    random_reverse,
    random_scale,
)
from shapmix.skeleton.layouts import get_layout

# firework8/BRL brl/models/recognizers/mixup_recognizergcn.py and datasets/pipelines/pose_related.py
AUTHORS_NTU_LOWER_BODY = (0, 12, 13, 14, 15, 16, 17, 18, 19)
AUTHORS_NTU_FLIP = (0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15, 20, 23, 24, 21, 22)
BACKBONES = ["ctrgcn", "stgcnpp", "agcn", "infogcn", "hdgcn"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("brl") / "data")


def brl(**options) -> BRLMethod:
    settings = dict(
        mix_fraction=0.5, kappa=3.0, label_share=None, scale=0.1, p_flip=0.5, p_reverse=0.0,
        beta_min=0.99, beta_span=0.0099, reweight_epoch=1, seed=0,
    )
    settings.update(options)
    return BRLMethod("ntu25", [30, 20, 5, 2], **settings)


def test_body_halves_and_left_right_are_the_authors_on_ntu():
    assert lower_body_joints("ntu25") == AUTHORS_NTU_LOWER_BODY
    assert mirror_permutation("ntu25") == AUTHORS_NTU_FLIP
    # NW-UCLA (kinect_v1): the authors' Nw_ucla_Lower_Body
    assert lower_body_joints("kinect_v1") == AUTHORS_NTU_LOWER_BODY
    # 16 of 25 joints stay: the authors' label share 0.64
    assert brl().label_share == pytest.approx(16 / 25)


def test_partial_mix_swaps_the_lower_body_of_the_chosen_samples_only():
    generator = torch.Generator().manual_seed(0)
    x = torch.arange(6.0)[:, None, None, None, None].expand(6, 3, 4, 25, 2).clone()  # sample i holds i
    lower = torch.zeros(25, dtype=torch.bool)
    lower[list(AUTHORS_NTU_LOWER_BODY)] = True
    mixed, partner = partial_mix(x, lower, 2, generator)
    is_mixed = partner != torch.arange(6)
    assert is_mixed.sum() == 2
    for i in range(6):
        if is_mixed[i]:
            assert partner[i] != i
            assert (mixed[i][:, :, lower] == partner[i]).all() and (mixed[i][:, :, ~lower] == i).all()
        else:
            assert torch.equal(mixed[i], x[i])
    # floor(fraction * N) of the batch: the authors' 1/16 of 16 is one sample, of 8 none
    assert torch.equal(partial_mix(x, lower, 0, generator)[0], x)


def test_rebalanced_labels_follow_the_class_counts():
    counts = torch.tensor([30.0, 20.0, 5.0, 2.0])
    own = torch.tensor([0, 1, 2, 0, 3])
    partner = torch.tensor([2, 0, 0, 1, 1])
    share = own_label_share(counts[own], counts[partner], kappa=3.0, share=0.64)
    # 30 > 3 x 5: head sample, label to the tail partner; 5 x 3 < 30: the tail keeps it all;
    # 20 vs 30 and 30 vs 20: balanced pairs share 0.64 / 0.36; 2 x 3 < 20: the tail keeps it
    assert share.tolist() == [0.0, 0.64, 1.0, 0.64, 1.0]


def test_mixed_batch_targets_put_the_label_where_the_rule_says():
    method = brl(mix_fraction=1.0, scale=0.0, p_flip=0.0)  # every sample mixed, nothing else
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    x = torch.arange(6.0)[:, None, None, None, None].expand(6, 3, 4, 25, 2).clone()  # sample i holds i
    mixed, targets = method.mixed_batch(x, y, epoch=0)
    partner = mixed[:, 0, 0, 0, 0].long()  # joint 0 (spine base) comes from the partner
    assert (partner != torch.arange(6)).all() and torch.equal(mixed[:, :, :, 1], x[:, :, :, 1])
    counts = [30, 20, 5, 2]
    for i in range(6):
        own, other = counts[y[i]], counts[y[partner[i]]]
        share = 0.0 if own > 3 * other else 1.0 if other > 3 * own else 0.64
        expected = share * F.one_hot(y[i], 4).float() + (1 - share) * F.one_hot(y[partner[i]], 4).float()
        assert torch.allclose(targets[i], expected), i


def test_action_aware_weights_are_the_authors_formula_of_the_class_counts():
    counts = [100, 10, 1]
    expected = []
    for n in counts:  # beta = 0.99 + 0.0099 (n - 1) / 99, w = (1 - beta) / (1 - beta^n)
        beta = 0.99 + 0.0099 * (n - 1) / 99
        expected.append((1 - beta) / (1 - beta**n))
    expected = [3 * w / sum(expected) for w in expected]
    weights = action_aware_weights(counts, 0.99, 0.0099)
    assert weights.tolist() == pytest.approx(expected, rel=1e-6)
    assert weights[0] < weights[1] < weights[2]  # the rarer, the heavier
    assert action_aware_weights([7, 7, 7], 0.99, 0.0099).tolist() == [1.0, 1.0, 1.0]


def test_action_aware_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    weights = torch.tensor([0.5, 1.0, 1.5])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.25, 0.75]])
    log_p0 = 2 - math.log(math.exp(2) + 2)  # log softmax of row 0 at class 0
    log_p1 = [1 - math.log(math.e + 2), 0 - math.log(math.e + 2)]  # row 1 at classes 1, 2
    numerator = 0.5 * -log_p0 + 0.25 * 1.0 * -log_p1[0] + 0.75 * 1.5 * -log_p1[1]
    denominator = 0.5 + 0.25 * 1.0 + 0.75 * 1.5
    assert action_aware_loss(logits, targets, weights).item() == pytest.approx(numerator / denominator)
    # one-hot targets: PyTorch's weighted cross entropy, as the authors' F.cross_entropy(weight=w)
    hard = torch.tensor([0, 2])
    one_hot = F.one_hot(hard, 3).float()
    assert torch.allclose(action_aware_loss(logits, one_hot, weights), F.cross_entropy(logits, hard, weight=weights))
    # before the re-weighting epoch (w = 1) the authors' a CE(z, y_a) + (1 - a) CE(z, y_b) with one a
    a, y_a, y_b = 0.64, torch.tensor([0, 1]), torch.tensor([2, 1])
    soft = a * F.one_hot(y_a, 3).float() + (1 - a) * F.one_hot(y_b, 3).float()
    authors = a * F.cross_entropy(logits, y_a) + (1 - a) * F.cross_entropy(logits, y_b)
    assert torch.allclose(action_aware_loss(logits, soft, torch.ones(3)), authors)


def test_the_step_switches_to_the_action_aware_weights_at_its_epoch():
    method = brl(reweight_epoch=2)
    assert torch.equal(method.class_weights_at(1, torch.device("cpu")), torch.ones(4))
    assert torch.equal(method.class_weights_at(2, torch.device("cpu")), action_aware_weights([30, 20, 5, 2], 0.99, 0.0099))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 25 * 2, 4))
    x = torch.randn(8, 3, 4, 25, 2, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    for epoch in (1, 2):
        loss, logits = method.training_loss(model, x, y, criterion=None, epoch=epoch)
        replay = brl(reweight_epoch=2)  # the same stream draws the same batch
        mixed, targets = replay.mixed_batch(x, y, epoch)
        expected = action_aware_loss(model(mixed), targets, replay.class_weights_at(epoch, x.device))
        assert torch.allclose(loss, expected) and logits.shape == (8, 4)


def test_augmentations_scale_flip_and_reverse_per_sample():
    generator = torch.Generator().manual_seed(0)
    x = torch.ones(64, 3, 4, 25, 2)
    coordinates = torch.tensor([True, True, False])  # x, y and a confidence channel
    scaled = random_scale(x, 0.1, generator, coordinates)
    factors = scaled[:, :, 0, 0, 0]
    assert (factors[:, :2] >= 0.9).all() and (factors[:, :2] <= 1.1).all() and (factors[:, 2] == 1).all()
    assert factors[:, 0].std() > 0.03 and not torch.equal(factors[:, 0], factors[:, 1])  # per sample and axis
    joints = torch.arange(25.0)[None, None, None, :, None].expand(64, 3, 4, 25, 2)
    permutation = torch.tensor(AUTHORS_NTU_FLIP)
    flipped = random_flip(joints, permutation, 1.0, generator)
    assert torch.equal(flipped[:, :, :, 4], joints[:, :, :, 8]) and torch.equal(flipped[:, :, :, 21], joints[:, :, :, 23])
    assert torch.equal(random_flip(joints, permutation, 0.0, generator), joints)
    halves = random_flip(joints, permutation, 0.5, generator)[:, 0, 0, 4, 0]
    assert 16 < (halves == 8).sum() < 48  # about half of 64 samples
    frames = torch.arange(4.0)[None, None, :, None, None].expand(2, 3, 4, 25, 2)
    assert torch.equal(random_reverse(frames, 1.0, generator), frames.flip(2))
    assert torch.equal(random_reverse(frames, 0.0, generator), frames)


def test_inference_is_the_plain_backbone(tiny_data, tmp_path):
    config = tiny_config(tiny_data, epochs=1, extra=["method.name=brl", "loss.name=ce", "log.plots=false"])
    trainer = Trainer(config, tmp_path / "run")
    try:
        assert trainer.method.heads is None and trainer.network is trainer.model  # nothing added to the model
        trainer.model.eval()
        x = torch.randn(2, 3, 8, 25, 2)
        with torch.no_grad():
            assert torch.equal(trainer.network(x), trainer.model.head(trainer.model.forward_features(x), 2))
    finally:
        trainer.close()


def test_config_and_preset():
    with pytest.raises(ConfigError, match="loss.name=ce"):
        load_config(None, ["method.name=brl"])  # the default config's Balanced Softmax
    with pytest.raises(ConfigError, match="drw_epoch"):
        load_config(None, ["method.name=brl", "loss.name=ce", "loss.drw_epoch=3"])
    with pytest.raises(ConfigError, match="brl_reweight_epoch"):
        load_config(None, ["method.name=brl", "loss.name=ce", "method.brl_reweight_epoch=14"])
    with pytest.raises(ConfigError, match="beta"):
        load_config(None, ["method.brl_beta_min=0.995", "method.brl_beta_span=0.005"])
    config = preset_config(PRESETS["brl"], 0, None, ["schedule.epochs=24"])
    method = config.method
    assert (config.loss.name, method.name, method.brl_reweight_epoch) == ("ce", "brl", 19)  # the authors' 19 of 24
    assert (method.brl_mix_fraction, method.brl_kappa, method.brl_scale, method.brl_p_flip) == (1 / 16, 3.0, 0.1, 0.5)
    built = build_method(method, 4, np.array([30, 20, 5, 2]), get_layout("ntu25"), seed=0, total_epochs=24)
    assert built.reweight_epoch == 19 and built.label_share == pytest.approx(0.64)
    default = build_method(MethodConfig(name="brl"), 4, np.array([30, 20, 5, 2]), get_layout("ntu25"), 0, total_epochs=100)
    assert default.reweight_epoch == 79


@pytest.mark.parametrize("backbone", BACKBONES)
def test_one_step_on_every_backbone(backbone, tiny_data, tmp_path):
    extra = [f"model.name={backbone}", "method.name=brl", "loss.name=ce", "train.batch_size=16", "train.threads=1",
             "log.plots=false", "method.brl_mix_fraction=0.25", "method.brl_reweight_epoch=0"]
    trainer = Trainer(tiny_config(tiny_data, epochs=1, extra=extra), tmp_path / "run")
    before = {key: value.clone() for key, value in trainer.model.state_dict().items()}
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    assert trainer.steps_per_epoch == 1
    assert np.isfinite(trainer.history[0]["loss"]) and np.isfinite(result["test"]["top1"])
    classifier = trainer.model.classifier_name
    assert any(not torch.equal(before[key], value) for key, value in trainer.model.state_dict().items() if key.startswith(classifier))


def test_resume_is_exact_across_the_reweighting_epoch(tiny_data, tmp_path):
    extra = ["method.name=brl", "loss.name=ce", "log.plots=false", "train.threads=1", "method.brl_mix_fraction=0.25",
             "method.brl_reweight_epoch=1", "method.brl_p_reverse=0.5"]
    _, expected, interrupted = assert_resumed_run_matches(tiny_config(tiny_data, epochs=2, extra=extra), tmp_path)
    assert interrupted["method"]["mixer"]["epoch"] == 0 and expected["method"]["mixer"]["epoch"] == 1


def test_a_run_stopped_mid_epoch_resumes_bit_identical(tiny_data, tmp_path):
    # the stream's position inside the interrupted epoch is checkpointed per rank and restored
    extra = ["method.name=brl", "loss.name=ce", "log.plots=false", "train.threads=1", "method.brl_mix_fraction=0.25",
             "method.brl_reweight_epoch=1", "method.brl_p_reverse=0.5"]
    config = tiny_config(tiny_data, epochs=2, extra=extra)
    train(config, tmp_path / "full")
    trainer = Trainer(config, tmp_path / "stopped")
    before_step = trainer.method.before_step
    stop_at = 4  # global step 4: epoch 2, its second step

    def stopping(model, x, y, epoch, step):
        if step == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return before_step(model, x, y, epoch, step)

    trainer.method.before_step = stopping
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    trainer.close()
    assert load_checkpoint(tmp_path / "stopped" / "last.pt")["in_epoch"]["step"] == 2  # 2 of 3 steps done
    train(config, tmp_path / "stopped", resume=True)
    expected, resumed = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "stopped" / "last.pt")
    for key, value in expected["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
