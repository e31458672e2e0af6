"""Tests for the CTR-GCN backbone and the model registry."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from helpers import SHARED_DATA
from shapmix.models import CTRGCN, available_models, build_model, load_original_checkpoint, register_model
from shapmix.models.ctrgcn import block_plan
from shapmix.models.registry import _REGISTRY
from shapmix.skeleton.graph import spatial_adjacency

REFERENCE_DIR = SHARED_DATA / "ctrgcn_reference"
REFERENCES = [
    # file, layout, classes, persons, parameters
    ("ctrgcn_ntu60_reference.pt", "ntu25", 60, 2, 1_446_672),
    ("ctrgcn_ucla10_reference.pt", "kinect_v1", 10, 1, 1_426_892),
]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def small_model(**overrides) -> CTRGCN:
    options = dict(num_classes=7, layout="kinect_v1", num_persons=2, base_channels=16, num_blocks=4)
    options.update(overrides)
    return build_model("ctrgcn", **options)


# --------------------------------------------------------------------------- size and original weights


@pytest.mark.parametrize("filename, layout, classes, persons, parameters", REFERENCES)
def test_parameter_count_matches_the_original(filename, layout, classes, persons, parameters):
    torch.manual_seed(0)
    model = build_model("ctrgcn", num_classes=classes, layout=layout, num_persons=persons)
    assert count_parameters(model) == parameters
    if layout == "ntu25":
        assert 1_440_000 <= count_parameters(model) <= 1_470_000


@pytest.mark.parametrize("filename, layout, classes, persons, parameters", REFERENCES)
def test_original_checkpoint_reproduces_original_logits(filename, layout, classes, persons, parameters):
    path = REFERENCE_DIR / filename
    if not path.exists():
        pytest.skip(f"reference checkpoint not found at {path} (../shared/data absent)")
    reference = torch.load(path, weights_only=True)
    assert reference["num_parameters"] == parameters
    torch.manual_seed(0)
    model = build_model("ctrgcn", num_classes=classes, layout=layout, num_persons=persons)
    result = model.load_state_dict(reference["state_dict"], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    model.eval()
    with torch.no_grad():
        logits = model(reference["input"])
    expected = reference["logits"]
    assert logits.shape == expected.shape
    relative = (logits - expected).abs().max() / expected.abs().max()
    assert relative < 1e-4, f"relative error {relative:.3g}"


def test_load_original_checkpoint_unwraps_and_strips_module_prefix():
    source = small_model()
    state = {"module." + k: v.clone() + 0.5 if v.is_floating_point() else v for k, v in source.state_dict().items()}
    target = small_model()
    load_original_checkpoint(target, {"state_dict": state})
    for key, value in target.state_dict().items():
        torch.testing.assert_close(value, state["module." + key])


# The original CTR-GCN's parameter names (Chen et al., ICCV 2021, model/ctrgcn.py), written out
# so that a clone without ../shared/data still checks that its checkpoints map onto this model.
_BATCH_NORM = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_CONV = ("weight", "bias")
ORIGINAL_SUBSETS = 3  # CTR-GC convolutions per unit, one per adjacency subset
ORIGINAL_DILATED_BRANCHES = 2  # the multi-scale TCN: two dilated branches, a max-pool one, a 1x1 one


def _names(prefix: str, suffixes: tuple[str, ...]) -> set[str]:
    return {f"{prefix}.{suffix}" for suffix in suffixes}


def original_block_keys(block: str, changes_channels: bool, has_residual: bool) -> set[str]:
    """State-dict keys of one TCN-GCN unit ``block`` (``l1`` ... ``l10``) of the original model."""
    gcn, tcn = f"{block}.gcn1", f"{block}.tcn1"
    keys = {f"{gcn}.PA", f"{gcn}.alpha"} | _names(f"{gcn}.bn", _BATCH_NORM)
    for subset in range(ORIGINAL_SUBSETS):
        for conv in ("conv1", "conv2", "conv3", "conv4"):
            keys |= _names(f"{gcn}.convs.{subset}.{conv}", _CONV)
    if changes_channels:  # the GCN's own residual projection
        keys |= _names(f"{gcn}.down.0", _CONV) | _names(f"{gcn}.down.1", _BATCH_NORM)
    for branch in range(ORIGINAL_DILATED_BRANCHES):
        keys |= _names(f"{tcn}.branches.{branch}.0", _CONV) | _names(f"{tcn}.branches.{branch}.1", _BATCH_NORM)
        keys |= _names(f"{tcn}.branches.{branch}.3.conv", _CONV) | _names(f"{tcn}.branches.{branch}.3.bn", _BATCH_NORM)
    pool, pointwise = ORIGINAL_DILATED_BRANCHES, ORIGINAL_DILATED_BRANCHES + 1
    keys |= _names(f"{tcn}.branches.{pool}.0", _CONV) | _names(f"{tcn}.branches.{pool}.1", _BATCH_NORM)
    keys |= _names(f"{tcn}.branches.{pool}.4", _BATCH_NORM)
    keys |= _names(f"{tcn}.branches.{pointwise}.0", _CONV) | _names(f"{tcn}.branches.{pointwise}.1", _BATCH_NORM)
    if has_residual:
        keys |= _names(f"{block}.residual.conv", _CONV) | _names(f"{block}.residual.bn", _BATCH_NORM)
    return keys


def original_keys(in_channels: int, plan: list[tuple[int, int]]) -> set[str]:
    """Every state-dict key of an original CTR-GCN with the blocks ``plan`` ((width, stride) each)."""
    keys = _names("data_bn", _BATCH_NORM) | _names("fc", _CONV)
    width = in_channels
    for index, (out, stride) in enumerate(plan, start=1):
        # the first unit has no residual connection; the others project when the shape changes
        keys |= original_block_keys(f"l{index}", width != out, index > 1 and (width != out or stride != 1))
        width = out
    return keys


def test_parameter_names_are_the_original_ones():
    model = small_model(layout="ntu25", num_blocks=4, base_channels=8)
    assert set(model.state_dict()) == original_keys(3, block_plan(4, 8))
    default = build_model("ctrgcn", num_classes=60, layout="ntu25", num_persons=2)
    assert set(default.state_dict()) == original_keys(3, block_plan(10, 64))  # l1 ... l10


def test_an_original_checkpoint_file_round_trips_with_equal_logits(tmp_path):
    torch.manual_seed(0)
    source = small_model(layout="ntu25", num_blocks=4, base_channels=8)
    with torch.no_grad():  # move the batch-norm statistics away from their initial values
        source.train()
        for _ in range(3):
            source(torch.randn(4, 3, 12, 25, 2))
        for parameter in source.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    source.eval()
    x = torch.randn(3, 3, 12, 25, 2)
    with torch.no_grad():
        expected = source(x)
    # as the original code writes it (a plain state dict), and as DataParallel-trained checkpoints
    # of other tools hold it (wrapped, with the "module." prefix)
    plain = tmp_path / "ctrgcn_original.pt"
    torch.save({key: value.clone() for key, value in source.state_dict().items()}, plain)
    wrapped = tmp_path / "ctrgcn_wrapped.pt"
    torch.save({"state_dict": {f"module.{key}": value.clone() for key, value in source.state_dict().items()}}, wrapped)
    for path in (plain, wrapped):
        torch.manual_seed(1)
        target = small_model(layout="ntu25", num_blocks=4, base_channels=8)
        result = load_original_checkpoint(target, path)
        assert not result.missing_keys and not result.unexpected_keys
        target.eval()
        with torch.no_grad():
            assert torch.equal(target(x), expected), path.name


# --------------------------------------------------------------------------- structure


def test_block_plan_matches_the_original_at_default_depth():
    plan = block_plan(10, 64)
    assert [c for c, _ in plan] == [64, 64, 64, 64, 128, 128, 128, 256, 256, 256]
    assert [s for _, s in plan] == [1, 1, 1, 1, 2, 1, 1, 2, 1, 1]
    assert block_plan(4, 16) == [(16, 1), (16, 1), (32, 2), (64, 2)]
    assert block_plan(3, 8) == [(8, 1), (16, 2), (32, 2)]
    with pytest.raises(ValueError):
        block_plan(0)


def test_fresh_model_initialisation_follows_the_original():
    torch.manual_seed(0)
    model = build_model("ctrgcn", num_classes=60, layout="ntu25", num_persons=2)
    A = torch.from_numpy(spatial_adjacency("ntu25"))
    for block in model.blocks:
        torch.testing.assert_close(block.gcn1.PA.detach(), A)
        assert block.gcn1.alpha.item() == 0.0
        assert torch.all(block.gcn1.bn.weight == 1e-6)
    assert model.l1.residual is None  # first block has no block residual
    assert isinstance(model.l5.residual, nn.Module) and model.l5.tcn1.branches[0][3].conv.stride == (2, 1)
    assert torch.all(model.data_bn.weight == 1) and torch.all(model.data_bn.bias == 0)
    assert model.l1.gcn1.convs[0].rel_channels == 8  # raw-input layer
    assert model.l2.gcn1.convs[0].rel_channels == 8  # 64 // 8
    assert model.l8.gcn1.convs[0].rel_channels == 16  # 128 // 8


def test_output_and_feature_shapes():
    torch.manual_seed(0)
    model = build_model("ctrgcn", num_classes=60, layout="ntu25", num_persons=2).eval()
    x = torch.randn(2, 3, 20, 25, 2)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert features.shape == (2 * 2, 256, 5, 25)  # T: 20 -> 10 -> 5
    assert logits.shape == (2, 60)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(model.head(features, 2), logits)


def test_wrong_input_shape_is_rejected():
    model = small_model()
    with pytest.raises(ValueError, match="V, M"):
        model(torch.randn(2, 3, 16, 25, 2))  # kinect_v1 has 20 joints
    with pytest.raises(ValueError, match="N, C, T, V, M"):
        model(torch.randn(2, 3, 16, 20))


def test_small_config_forward_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = small_model(dropout=0.5).train()
    # alpha starts at 0 (so conv4 gets no gradient at initialisation) and the GCN batch norm at
    # 1e-6; move them off these values so that every parameter takes part in the function
    with torch.no_grad():
        for block in model.blocks:
            block.gcn1.alpha.fill_(0.5)
            block.gcn1.bn.weight.fill_(1.0)
    x = torch.randn(3, 3, 16, 20, 2)
    target = torch.tensor([0, 3, 6])
    loss = nn.functional.cross_entropy(model(x), target)
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_fresh_model_gradients_reach_alpha_and_topology():
    torch.manual_seed(0)
    model = small_model()
    nn.functional.cross_entropy(model(torch.randn(2, 3, 16, 20, 2)), torch.tensor([1, 2])).backward()
    for block in model.blocks:
        assert block.gcn1.alpha.grad.abs().sum() > 0
        assert block.gcn1.PA.grad.abs().sum() > 0


def test_eval_mode_is_batch_independent():
    torch.manual_seed(0)
    model = small_model().eval()
    # non-trivial running statistics, as after training
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    x = torch.randn(4, 3, 16, 20, 2)
    changed = x.clone()
    changed[1:] = torch.randn(3, 3, 16, 20, 2)
    with torch.no_grad():
        first, second = model(x), model(changed)
        alone = model(x[:1])
    torch.testing.assert_close(second[0], first[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone[0], first[0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(second[1:], first[1:])  # the other samples did change


def test_non_adaptive_graph_is_a_fixed_non_persistent_buffer():
    model = small_model(adaptive=False)
    assert not any(name.endswith("PA") for name, _ in model.named_parameters())
    assert not any(key.endswith(".A") for key in model.state_dict())
    torch.testing.assert_close(model.l1.gcn1.A, torch.from_numpy(spatial_adjacency("kinect_v1")))
    model = model.to(torch.float64)
    assert model.l1.gcn1.A.dtype == torch.float64
    assert model(torch.randn(2, 3, 8, 20, 2, dtype=torch.float64)).shape == (2, 7)


def test_width_and_depth_are_configurable():
    model = small_model(base_channels=8, num_blocks=3, in_channels=2, num_persons=1)
    assert [name for name, _ in model.named_children() if name.startswith("l")] == ["l1", "l2", "l3"]
    assert model.out_channels == 32
    assert model(torch.randn(2, 2, 12, 20, 1)).shape == (2, 7)
    with pytest.raises(ValueError, match="multiple of 4"):
        small_model(base_channels=10)


# --------------------------------------------------------------------------- registry


def test_registry_builds_ctrgcn_and_reports_unknown_names():
    assert "ctrgcn" in available_models()
    assert isinstance(build_model("CTRGCN", num_classes=5, layout="ntu25", num_persons=1, base_channels=8), CTRGCN)
    with pytest.raises(KeyError, match="ctrgcn"):
        build_model("no-such-model", num_classes=5, layout="ntu25", num_persons=1)


def test_register_model_as_decorator_and_duplicate_names():
    name = "test_dummy_model"
    try:

        @register_model(name)
        class Dummy(nn.Module):
            def __init__(self, num_classes, layout, num_persons, in_channels=3, width=1):
                super().__init__()
                self.args = (num_classes, layout, num_persons, in_channels, width)

        model = build_model(name, num_classes=3, layout="coco17", num_persons=1, in_channels=2, width=4)
        assert isinstance(model, Dummy) and model.args == (3, "coco17", 1, 2, 4)
        assert name in available_models()
        with pytest.raises(ValueError, match="already registered"):
            register_model(name, lambda **kw: nn.Identity())
    finally:
        _REGISTRY.pop(name, None)
    assert name not in available_models()


def test_seeded_construction_is_deterministic():
    torch.manual_seed(123)
    a = small_model()
    torch.manual_seed(123)
    b = small_model()
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), key
    x = torch.randn(2, 3, 8, 20, 2)
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).detach().numpy(), b(x).detach().numpy())
