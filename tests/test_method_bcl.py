"""BCL (Zhu et al., CVPR 2022): the balanced contrastive loss, logit compensation, the extra
views, every backbone and exact resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (
    make_tiny_dataset,
    tiny_config,
    tiny_overrides,
)
from torch.utils.data import default_collate

from shapmix.bench.presets import PRESETS, preset_config
from shapmix.config import ConfigError
from shapmix.data.transforms import RandomRotation, build_pipeline
from shapmix.engine.checkpoint import load_checkpoint
from shapmix.engine.trainer import train
from shapmix.methods import BCLMethod, TrainingNetwork, build_method
from shapmix.methods.bcl import balanced_contrastive_loss
from shapmix.methods.contrastive import RotatedViews, pipeline_rotation

BCL = ["method.name=bcl", "loss.name=ce", "train.threads=1", "log.plots=false"]
BACKBONES = ["ctrgcn", "stgcnpp", "agcn", "infogcn", "hdgcn"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny backbones run faster on one thread, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("bcl_data") / "tiny")


def _tiny_bcl(tiny_data, extra=()):
    """The model, a training batch of 8 (augmented) and a BCL method built as the trainer does."""
    from shapmix.engine.builders import build_pipelines, build_run_model, open_run_data

    torch.manual_seed(0)
    config = tiny_config(tiny_data, epochs=2, extra=[*BCL, *extra])
    data = open_run_data(config)
    model = build_run_model(config, data.dataset)
    train_pipeline, _ = build_pipelines(config, data.dataset)
    method = build_method(
        config.method, data.dataset.num_classes, data.train_counts, data.dataset.layout, config.train.seed,
        model=model, train_split=data.train, train_pipeline=train_pipeline, total_epochs=2,
    )
    batch = default_collate([data.train[i] for i in range(0, 24, 3)])  # every class
    x, _ = train_pipeline(batch.x, batch.length, torch.Generator().manual_seed(0))
    return model, method, x, batch.label, data.train_counts


# ------------------------------------------------------------------------- the contrastive loss


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_class_averaging_on_a_hand_computed_example(temperature):
    """Labels [0, 0, 1], two identical views, one-hot embeddings and prototypes.

    Anchor of class 0: its class has 4 other members at similarity 1 (the other sample, the two
    second views, the prototype), class 1 has 3 at similarity 0, so the class-averaged
    denominator is ``exp(1/T) + 1`` and every positive has ``log p = 1/T - log(exp(1/T) + 1)``.
    An anchor of class 1 (2 other members at 1, 5 at 0 in class 0) gets the same: class averaging
    makes the loss blind to how many samples of each class the batch holds.  Plain supervised
    contrast would give ``log(4 e^(1/T) + 3) - 1/T`` and ``log(2 e^(1/T) + 5) - 1/T``.
    """
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    view = torch.stack([e0, e0, e1])
    embeddings = torch.cat([view, view])
    prototypes = torch.stack([e0, e1])
    loss = balanced_contrastive_loss(embeddings, prototypes, torch.tensor([0, 0, 1]), temperature)
    expected = math.log(math.exp(1 / temperature) + 1) - 1 / temperature
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def _loop_bcl_loss(embeddings, prototypes, labels, temperature):
    """The balanced contrastive loss term by term (Zhu et al. 2022, eq. 7)."""
    views = len(embeddings) // len(labels)
    members = torch.cat([embeddings, prototypes]).double()
    member_y = labels.repeat(views).tolist() + list(range(len(prototypes)))
    total = 0.0
    for i in range(len(embeddings)):
        similarity = {j: float(members[i] @ members[j]) / temperature for j in range(len(members)) if j != i}
        denominator = 0.0
        for c in set(member_y):
            in_class = [j for j in similarity if member_y[j] == c]
            denominator += sum(math.exp(similarity[j]) for j in in_class) / len(in_class)
        positives = [j for j in similarity if member_y[j] == member_y[i]]
        total += -sum(similarity[j] - math.log(denominator) for j in positives) / len(positives)
    return total / len(embeddings)


def test_balanced_contrastive_loss_is_the_term_by_term_formula():
    generator = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 0, 1, 2, 0])
    for views in (2, 3):
        embeddings = F.normalize(torch.randn(views * len(labels), 5, generator=generator), dim=1)
        prototypes = F.normalize(torch.randn(4, 5, generator=generator), dim=1)  # class 3: no sample
        loss = balanced_contrastive_loss(embeddings, prototypes, labels, 0.07)
        assert loss.item() == pytest.approx(_loop_bcl_loss(embeddings, prototypes, labels, 0.07), rel=1e-5)


# ------------------------------------------------------------------------- logit compensation


def test_logit_compensation_adds_the_log_priors(tiny_data):
    model, method, x, y, counts = _tiny_bcl(tiny_data, ["method.bcl_beta=0", "method.bcl_alpha=2"])
    log_prior = torch.tensor(np.log(counts / counts.sum()), dtype=torch.float32)
    # zero logits: the loss of class c is -log prior_c
    zero_logit_loss = method.classification_loss(torch.zeros(1, 4), torch.tensor([3]))
    assert zero_logit_loss.item() == pytest.approx(-log_prior[3].item())
    # with beta = 0 the step's loss is alpha * cross entropy on logits + log prior
    loss, logits = method.training_loss(TrainingNetwork(model, method.heads), x, y, None, epoch=0)
    torch.testing.assert_close(loss, 2 * F.cross_entropy(logits + log_prior, y))
    assert not torch.allclose(loss, 2 * F.cross_entropy(logits, y))


def test_every_part_is_trained(tiny_data):
    model, method, x, y, _ = _tiny_bcl(tiny_data)
    assert isinstance(method, BCLMethod)
    loss, logits = method.training_loss(TrainingNetwork(model, method.heads), x, y, None, epoch=0)
    assert logits.shape == (8, 4) and torch.isfinite(loss)
    loss.backward()
    backbone = [("fc.weight", model.fc.weight), ("data_bn.weight", model.data_bn.weight)]
    for name, parameter in [*method.heads.named_parameters(), *backbone]:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_bcl_requires_cross_entropy(tiny_data):
    with pytest.raises(ConfigError, match="loss.name=ce"):
        tiny_config(tiny_data, extra=["method.name=bcl", "loss.name=balanced_softmax"])


# ------------------------------------------------------------------------- views


def test_views_are_fresh_rotations_of_the_batch_repeated_per_epoch():
    x = torch.randn(6, 3, 8, 25, 2)
    views = RotatedViews(RandomRotation(0.3), seed=5, rank=0, name="test views")
    first, second = views.draw(x, 2, epoch=0)
    for view in (first, second):
        assert not torch.allclose(view, x)
        # a rotation keeps the length of every joint's coordinate vector
        torch.testing.assert_close(view.norm(dim=1), x.norm(dim=1))
    assert not torch.allclose(first, second)
    state = views.state_dict()
    later = views.draw(x, 1, epoch=0)[0]
    views.load_state_dict(state)
    torch.testing.assert_close(views.draw(x, 1, epoch=0)[0], later)  # resumed mid-epoch
    views.draw(x, 1, epoch=1)
    assert torch.equal(views.draw(x, 2, epoch=0)[0], first)  # each epoch starts its own stream
    other_rank = RotatedViews(RandomRotation(0.3), seed=5, rank=1, name="test views")
    assert not torch.allclose(other_rank.draw(x, 1, epoch=0)[0], first)


def test_without_a_pipeline_rotation_the_views_are_copies():
    pipeline = build_pipeline("ntu25", train=True, window=8, min_crop_frames=4, rotation=0.0)
    assert pipeline_rotation(pipeline) is None
    assert isinstance(pipeline_rotation(build_pipeline("ntu25", train=True, window=8)), RandomRotation)
    x = torch.randn(2, 3, 8, 25, 2)
    views = RotatedViews(None, seed=0, rank=0, name="test views").draw(x, 2, epoch=0)
    assert all(torch.equal(view, x) and view is not x for view in views)


# ------------------------------------------------------------------------- training runs


@pytest.mark.parametrize("name", BACKBONES)
def test_one_bcl_step_of_the_preset_on_every_backbone(tiny_data, tmp_path, name):
    # the preset (cosine classifier of scale 30), one batch of 16 of the 28 training samples
    before = [*tiny_overrides(tiny_data, epochs=1), f"model.name={name}", "train.batch_size=16", *BCL[2:]]
    config = preset_config(PRESETS["bcl"], 0, None, before)
    assert config.model.args["classifier"] == "cosine" and config.model.args["cosine_scale"] == 30
    result = train(config, tmp_path / "run")
    assert np.isfinite(result["test"]["top1"])
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert np.isfinite(state["history"][0]["loss"])
    assert {"heads", "views"} == set(state["method"]) and state["method"]["views"]["epoch"] == 0

