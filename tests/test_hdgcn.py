"""Tests for the HD-GCN backbone: original checkpoints, names, hierarchy and neighbour selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers import shared_data
from shapmix.models import HDGCN, build_model, load_original_checkpoint
from shapmix.models.hdgcn import EdgeConv
from shapmix.skeleton.hierarchy import hierarchical_adjacency

NTU60_PARAMETERS = 1_659_980  # the original's count (reference README)
NTU60_ORIGINAL_KEYS = 3017
NTU60_ALIAS_KEYS = 270  # the original's `conv_d` copies of conv.5 in l1..l10


def tiny_model(**overrides) -> HDGCN:
    options = dict(num_classes=5, layout="ntu25", num_persons=2, base_channels=8, num_blocks=3)
    options.update(overrides)
    return build_model("hdgcn", **options)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def with_original_aliases(state: dict[str, torch.Tensor], num_blocks: int, num_layers: int) -> dict[str, torch.Tensor]:
    """``state`` as the original saves it: ``conv.{L-1}`` of every block repeated as ``conv_d``."""
    original = dict(state)
    for block in range(1, num_blocks + 1):
        prefix = f"l{block}.gcn1.conv.{num_layers - 1}."
        for key, value in state.items():
            if key.startswith(prefix):
                original[f"l{block}.gcn1.conv_d." + key[len(prefix):]] = value
    return original


# --------------------------------------------------------------------------- the original's weights


def test_full_size_model_has_the_originals_parameters_and_names():
    model = build_model("hdgcn", num_classes=60, layout="ntu25", num_persons=2)
    assert count_parameters(model) == NTU60_PARAMETERS
    state = model.state_dict()
    assert len(state) == NTU60_ORIGINAL_KEYS - NTU60_ALIAS_KEYS
    assert "l1.gcn1.aha.conv_down.0.weight" not in state  # l1 has no attention, as the original
    assert {"l1.gcn1.PA", "l1.gcn1.down.0.weight", "l2.gcn1.aha.edge_conv.conv.0.weight", "l2.gcn1.aha.aggregate.bias",
            "l2.gcn1.conv.5.3.conv.1.running_mean", "l5.residual.conv.bias", "l5.tcn1.branches.0.3.bias",
            "fc.weight"} <= set(state)
    assert state["l1.gcn1.PA"].shape == (6, 3, 25, 25)


def test_original_checkpoint_reproduces_logits():
    reference = torch.load(shared_data("backbone_reference", "hdgcn_ntu60_reference.pt"), weights_only=True)
    model = build_model("hdgcn", num_classes=60, layout="ntu25", num_persons=2)
    assert count_parameters(model) == reference["num_parameters"]
    original_keys = set(reference["state_dict"])
    assert set(model.state_dict()) == {key for key in original_keys if ".gcn1.conv_d." not in key}
    load_original_checkpoint(model, model.convert_original_state_dict(reference["state_dict"]))
    model.eval()
    with torch.no_grad():
        logits = model(reference["input"])
    relative = (logits - reference["logits"]).abs().max() / reference["logits"].abs().max()
    assert relative < 1e-5, f"relative error {relative:.3g}"


def test_state_dict_round_trip_under_original_names_reproduces_the_function():
    torch.manual_seed(0)
    source = tiny_model()
    with torch.no_grad():
        for tensor in source.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.1 * torch.randn_like(tensor))
    num_layers = source.l1.gcn1.num_layers
    original = with_original_aliases(source.state_dict(), 3, num_layers)
    assert len(original) > len(source.state_dict())
    torch.manual_seed(1)
    target = tiny_model()
    load_original_checkpoint(target, {"state_dict": {"module." + k: v for k, v in target.convert_original_state_dict(original).items()}})
    x = torch.randn(3, 3, 12, 25, 2)
    source.eval(), target.eval()
    with torch.no_grad():
        assert torch.equal(source(x), target(x))
    # an alias that is not a copy of its twin is reported by name
    original["l2.gcn1.conv_d.0.0.weight"] = original["l2.gcn1.conv_d.0.0.weight"] + 1
    with pytest.raises(ValueError, match=r"'l2.gcn1.conv_d.0.0.weight' should be an alias of 'l2.gcn1.conv.5.0.0.weight'"):
        target.convert_original_state_dict(original)


def test_every_parameter_has_its_own_storage():
    """Blocks are built from one adjacency array; each ``PA`` must own a copy, or loading a
    checkpoint writes every block's adjacency into the same memory."""
    pointers = [p.data_ptr() for p in tiny_model().parameters()]
    assert len(pointers) == len(set(pointers))


# --------------------------------------------------------------------------- hierarchy and neighbours


def test_hierarchy_centre_and_merged_levels_are_options():
    model = tiny_model(center="spine_base", max_levels=7)
    np.testing.assert_array_equal(
        model.l1.gcn1.PA.detach().numpy(), hierarchical_adjacency("ntu25", "spine_base", max_levels=7)
    )
    assert len(model.levels) == 7 and model.levels[0] == (0,)
    assert model.l2.gcn1.aha.layers[-1] == model.levels[-2] + model.levels[-1]
    with pytest.raises(ValueError, match="at least 4 levels"):
        tiny_model(max_levels=3)
    with pytest.raises(ValueError, match="no joint named"):
        tiny_model(center="pelvis")


def test_knn_uses_the_originals_score_formula_on_a_near_tie():
    """Row 11 of this input has its 5th and 6th nearest joints within 7e-8 (relative) of each
    other: which one a top-k keeps depends on how the score is rounded, so the model must
    compute it as the original does, -|x_v|^2 - (-2 x_v . x_u) - |x_u|^2."""
    x = torch.randn(64, 16, 25, generator=torch.Generator().manual_seed(365))[21:22]
    squared_norms = torch.sum(x**2, dim=1, keepdim=True)
    original_score = -squared_norms - (-2 * torch.matmul(x.transpose(2, 1), x)) - squared_norms.transpose(2, 1)
    ordered = original_score[0, 11].sort(descending=True)[0]
    assert (ordered[4] - ordered[5]).abs() / ordered.abs().max() < 1e-6
    assert torch.equal(EdgeConv.knn(x, 5), original_score.topk(k=5, dim=-1)[1])


def test_edge_conv_picks_the_nearest_points_and_keeps_time():
    points = torch.tensor([[0.0, 0.1, 5.0, 5.2, 9.0]])[None]  # (1, 1, 5): two clusters and a loner
    assert EdgeConv.knn(points, 2)[0].sort(dim=-1)[0].tolist() == [[0, 1], [0, 1], [2, 3], [2, 3], [3, 4]]
    edge = EdgeConv(4, 6, k=3)
    assert edge(torch.randn(2, 4, 7, 25)).shape == (2, 6, 7, 25)
    assert edge(torch.randn(2, 4, 9)).shape == (2, 6, 9)


def test_constructor_rejects_bad_options():
    with pytest.raises(ValueError, match="multiple of 4"):
        tiny_model(base_channels=6)
    with pytest.raises(ValueError, match=r"expected \(C, V, M\)"):
        tiny_model()(torch.randn(2, 3, 8, 20, 2))
