"""Tests for the Grad-CAM part saliency (the Grad-CAM guidance of the paper's Table 8)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shapmix.engine.checkpoint import load_checkpoint
from shapmix.engine.trainer import train
from shapmix.mixing import PartCombinations, gradcam_joint_maps, gradcam_part_scores
from shapmix.models import build_model

from helpers import make_tiny_dataset, tiny_config

LAYOUT = "ntu25"
NUM_CLASSES = 4
NUM_PERSONS = 2
BATCH, CHANNELS, FRAMES, JOINTS = 3, 3, 16, 25
CLOSE = {"rtol": 1e-5, "atol": 1e-7}


@pytest.fixture(autouse=True)
def _one_thread():
    """Small CTR-GCN forwards run faster on one thread, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    net = build_model(
        "ctrgcn", num_classes=NUM_CLASSES, layout=LAYOUT, num_persons=NUM_PERSONS, base_channels=8, num_blocks=3
    )
    # give batch norm non-trivial running statistics, so eval mode differs from train mode
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, CHANNELS, FRAMES, JOINTS, NUM_PERSONS))
    return net


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, CHANNELS, FRAMES, JOINTS, NUM_PERSONS, generator=generator)
    x[0, ..., 1] = 0  # an absent second person
    return x, torch.tensor([0, 3, 1])


@pytest.fixture
def combinations() -> PartCombinations:
    return PartCombinations.from_layout(LAYOUT)


def manual_gradcam_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, combos: PartCombinations) -> torch.Tensor:
    """The same formula written out sample by sample with a full autograd graph."""
    model.eval()
    features = model.forward_features(x)  # (N*M, C, T', V), with a graph to the parameters
    logits = model.head(features, NUM_PERSONS)
    part_of_joint = combos.layout.part_of_joint
    rows = []
    for n in range(len(y)):
        (grad,) = torch.autograd.grad(logits[n, y[n]], features, retain_graph=True)
        joint_map = torch.zeros(JOINTS)
        for m in range(NUM_PERSONS):
            row = n * NUM_PERSONS + m
            weights = grad[row].mean(dim=(1, 2))  # (C,)
            cam = torch.relu(torch.einsum("c,ctv->tv", weights, features[row].detach()))
            joint_map += cam.sum(dim=0)
        joint_map /= joint_map.sum()
        rows.append(
            torch.stack(
                [
                    joint_map[[v for v in range(JOINTS) if part_of_joint[v] in combo]].mean()
                    for combo in combos.combinations
                ]
            )
        )
    return torch.stack(rows)


def test_scores_are_nonnegative_per_combination_and_leave_the_model_untouched(model, batch, combinations):
    x, y = batch
    model.train()
    model.l2.eval()  # a submodule frozen in eval mode must stay so
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    scores = gradcam_part_scores(model, x, y, combinations)
    assert scores.shape == (BATCH, len(combinations)) and scores.dtype == torch.float32
    assert (scores >= 0).all() and scores.sum() > 0
    assert all(p.grad is None for p in model.parameters())
    assert model.training and model.l1.training and not model.l2.training and model.l3.training
    after = model.state_dict()  # eval mode: batch-norm running statistics did not move
    assert all(torch.equal(before[name], after[name]) for name in before)
    maps = gradcam_joint_maps(model, x, y)
    assert torch.allclose(maps.sum(dim=1), torch.ones(BATCH))


def test_scores_match_a_manual_autograd_computation(model, batch, combinations):
    x, y = batch
    scores = gradcam_part_scores(model, x, y, combinations)
    expected = manual_gradcam_scores(model, x, y, combinations)
    torch.testing.assert_close(scores, expected, **CLOSE)
    # the true class matters: scoring other classes gives other maps (the check can fail)
    other = gradcam_part_scores(model, x, (y + 1) % NUM_CLASSES, combinations)
    assert not torch.allclose(scores, other, **CLOSE)


class HookOnly(nn.Module):
    """A backbone exposing only ``forward`` and ``last_block`` (the hook path)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.last_block = inner.last_block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_hook_path_matches_the_features_and_head_path(model, batch, combinations):
    x, y = batch
    direct = gradcam_part_scores(model, x, y, combinations)
    wrapped = HookOnly(model)
    hooked = gradcam_part_scores(wrapped, x, y, combinations)
    torch.testing.assert_close(hooked, direct, **CLOSE)
    assert all(p.grad is None for p in model.parameters())
    assert not model.l3._forward_hooks  # the hook was removed
    with pytest.raises(TypeError, match="forward_features"):
        gradcam_part_scores(nn.Linear(2, 2), x, y, combinations)


def test_training_with_gradcam_guidance_feeds_every_combination_of_the_table(tmp_path):
    data = make_tiny_dataset(tmp_path / "data")
    extra = ["method.name=shapmix", "method.guidance=gradcam", "method.warmup_epochs=0", "data.window=16", "train.threads=1"]
    out = tmp_path / "run"
    train(tiny_config(data, epochs=1, extra=extra), out)
    table = load_checkpoint(out / "last.pt")["method"]["table"]
    counts, values = table["counts"], table["values"]
    assert counts.shape == (NUM_CLASSES, 20) and counts.sum() > 0
    # every estimation step scores all combinations of every sample: whole rows are updated
    assert (counts == counts[:, :1]).all()
    assert (values >= 0).all() and (values <= 1).all()
    assert (values[counts > 0] > 0).any()
