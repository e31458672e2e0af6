"""Tests for the ST-GCN++ and 2s-AGCN backbones and for loading original checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers import make_tiny_dataset, shared_data, tiny_config
from shapmix.config import ConfigError, load_config
from shapmix.engine.trainer import Trainer
from shapmix.mixing import PartCombinations, gradcam_part_scores
from shapmix.models import AGCN, STGCNPP, available_models, build_model, load_original_checkpoint
from shapmix.skeleton.graph import inward_links, pyskl_inward_links, spatial_adjacency
from shapmix.skeleton.layouts import available_layouts

BACKBONES = ["stgcnpp", "agcn"]
# persons per sample and coordinates per joint the layout's datasets come with
TYPICAL_INPUT = {
    "ntu25": (2, 3), "kinect_v1": (1, 3), "utd_mhad": (1, 3), "msr_action3d": (1, 3),
    "coco17": (2, 3), "openpose18": (2, 3),
}
TINY = dict(base_channels=8, num_blocks=3)
REFERENCES = {
    # model name: (file, parameters of the NTU-60 model)
    "stgcnpp": ("stgcnpp_ntu60_reference.pt", 1_403_144),
    "agcn": ("agcn_ntu60_reference.pt", 3_469_510),
}
LOGIT_TOLERANCE = 1e-5  # of the largest |logit|


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tiny_model(name: str, **overrides) -> nn.Module:
    options = dict(num_classes=7, layout="ntu25", num_persons=2, **TINY)
    options.update(overrides)
    return build_model(name, **options)


def _original_graph(inward_one_based: list[tuple[int, int]], num_joints: int) -> np.ndarray:
    """The spatial graph as pyskl's and 2s-AGCN's ``graph`` code builds it, written out here:
    ``A[j, i] = 1`` for a link ``(i, j)``, each matrix times the inverse of its column sums."""
    def matrix(links):
        A = np.zeros((num_joints, num_joints))
        for i, j in links:
            A[j, i] = 1
        column_sums = A.sum(axis=0)
        return A / np.where(column_sums > 0, column_sums, 1)

    inward = [(i - 1, j - 1) for i, j in inward_one_based]
    return np.stack([np.eye(num_joints), matrix(inward), matrix([(j, i) for i, j in inward])])


# 1-based (child, parent) links of the NTU graphs of the original code
_NTU_BODY = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10),
             (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19)]
PYSKL_NTU = _NTU_BODY + [(22, 8), (23, 8), (24, 12), (25, 12)]  # pyskl/utils/graph.py 'nturgb+d'
AGCN_NTU = _NTU_BODY + [(22, 23), (23, 8), (24, 25), (25, 12)]  # 2s-AGCN graph/ntu_rgb_d.py


# --------------------------------------------------------------------------- graphs


def test_stgcnpp_starts_from_pyskl_ntu_graph():
    A = STGCNPP(60, "ntu25", 2).gcn[0].gcn.A.detach().numpy()
    np.testing.assert_allclose(A, _original_graph(PYSKL_NTU, 25), rtol=0, atol=1e-7)
    left_hand, left_hand_tip, left_thumb, spine_shoulder = 7, 21, 22, 20
    assert A[1][left_hand, left_hand_tip] == 1 and A[1][left_hand, left_thumb] == 1  # both hang from the hand
    assert A[2][left_hand_tip, left_hand] == 0.5 and A[2][left_thumb, left_hand] == 0.5  # the hand's 2 children
    assert A[2][:, spine_shoulder].sum() == pytest.approx(1.0) and A[2][1, spine_shoulder] == 0.25
    np.testing.assert_allclose(A[1].sum(axis=0), [0.0 if v == spine_shoulder else 1.0 for v in range(25)])


def test_agcn_fixed_graph_is_its_ntu_graph_and_not_in_the_state_dict():
    model = AGCN(60, "ntu25", 2)
    A = model.l1.gcn1.A.numpy()
    np.testing.assert_allclose(A, _original_graph(AGCN_NTU, 25), rtol=0, atol=1e-7)
    left_hand, left_hand_tip, left_thumb = 7, 21, 22
    assert A[1][left_thumb, left_hand_tip] == 1 and A[1][left_hand, left_thumb] == 1  # the chain tip -> thumb -> hand
    assert A[2][left_thumb, left_hand] == 1.0
    assert not any(key.endswith(".A") for key in model.state_dict())
    assert all(torch.all(block.gcn1.PA == 1e-6) for block in model.blocks)


def test_pyskl_links_differ_from_the_layout_only_at_ntu_hands():
    changed = set(pyskl_inward_links("ntu25")) ^ set(inward_links("ntu25"))
    assert changed == {(21, 22), (23, 24), (21, 7), (23, 11)}
    for name in available_layouts():
        if name != "ntu25":  # coco17 / openpose18 are pyskl's graphs; the others have none there
            assert pyskl_inward_links(name) == inward_links(name)


def test_reference_stgcnpp_graph_parameters_started_at_pyskl_graph():
    """The checkpoint's learned A moved (noise 0.02 + 5 SGD steps) far less than the two NTU
    graphs differ (entries 1 and 0.5 against 0)."""
    state = torch.load(shared_data("backbone_reference", REFERENCES["stgcnpp"][0]), weights_only=True)["state_dict"]
    pyskl_graph = spatial_adjacency("ntu25", pyskl_inward_links("ntu25"))
    for block in range(10):
        learned = state[f"backbone.gcn.{block}.gcn.A"].numpy()
        assert np.abs(learned - pyskl_graph).max() < 0.2
        assert np.abs(learned - spatial_adjacency("ntu25")).max() > 0.8


# --------------------------------------------------------------------------- original checkpoints


@pytest.mark.parametrize("name", BACKBONES)
def test_parameter_count_matches_the_original(name):
    assert count_parameters(build_model(name, num_classes=60, layout="ntu25", num_persons=2)) == REFERENCES[name][1]


@pytest.mark.parametrize("name", BACKBONES)
def test_original_checkpoint_reproduces_original_logits(name):
    filename, parameters = REFERENCES[name]
    path = shared_data("backbone_reference", filename)
    reference = torch.load(path, weights_only=True)
    assert reference["num_parameters"] == parameters
    model = build_model(name, num_classes=60, layout="ntu25", num_persons=2)
    load_original_checkpoint(model, path)  # pyskl's key names as they are
    x = reference["input"]
    if reference["input_layout"] == "N M T V C":
        x = x.permute(0, 4, 2, 3, 1)
    assert x.shape == (3, 3, 64, 25, 2)
    model.eval()
    with torch.no_grad():
        logits = model(x)
    expected = reference["logits"]
    assert (logits - expected).abs().max() <= LOGIT_TOLERANCE * expected.abs().max()
    # the logits of the samples differ by little (ST-GCN++: ~1e-4); that part must match too
    deviation, expected_deviation = logits - logits.mean(0), expected - expected.mean(0)
    assert (deviation - expected_deviation).abs().max() <= 1e-2 * expected_deviation.abs().max()


def test_pyskl_names_round_trip_through_load_original_checkpoint():
    torch.manual_seed(0)
    source = tiny_model("stgcnpp").eval()
    pyskl_state = {
        ("cls_head.fc_cls." + key[3:] if key.startswith("fc.") else "backbone." + key): value + 0.1
        if value.is_floating_point() else value
        for key, value in source.state_dict().items()
    }
    assert "backbone.gcn.0.gcn.A" in pyskl_state and "cls_head.fc_cls.bias" in pyskl_state
    target = tiny_model("stgcnpp").eval()
    load_original_checkpoint(target, {"state_dict": {"module." + k: v for k, v in pyskl_state.items()}})
    source.load_state_dict({k: v + 0.1 if v.is_floating_point() else v for k, v in source.state_dict().items()})
    x = torch.randn(2, 3, 12, 25, 2)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_agcn_original_names_load_with_ddp_prefix():
    torch.manual_seed(0)
    source = tiny_model("agcn").eval()
    target = tiny_model("agcn").eval()
    load_original_checkpoint(target, {"module." + key: value for key, value in source.state_dict().items()})
    x = torch.randn(2, 3, 12, 25, 2)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_a_checkpoint_that_does_not_fit_names_keys_and_shapes(tmp_path):
    path = tmp_path / "stgcnpp.pt"
    torch.save({"state_dict": tiny_model("stgcnpp").state_dict()}, path)
    with pytest.raises(ValueError, match=r"missing keys: l1.gcn1.PA, .*unexpected keys: gcn.0.gcn.A, .*data_bn.weight: checkpoint \(75,\) vs model \(150,\)") as error:
        load_original_checkpoint(tiny_model("agcn"), path)  # another backbone
    assert str(path) in str(error.value) and "in all)" in str(error.value)
    with pytest.raises(ValueError, match=r"fc.weight: checkpoint \(7, 32\) vs model \(5, 32\)"):
        load_original_checkpoint(tiny_model("stgcnpp", num_classes=5), path)  # class count
    with pytest.raises(ValueError, match=r"data_bn.weight: checkpoint \(75,\) vs model \(60,\)"):
        load_original_checkpoint(tiny_model("stgcnpp", layout="kinect_v1"), path)  # layout
    with pytest.raises(ValueError, match=r"shape mismatches: gcn.0.gcn.bn.weight: checkpoint \(8,\) vs model \(12,\)"):
        load_original_checkpoint(tiny_model("stgcnpp", base_channels=12), path)  # width
    with pytest.raises(ValueError, match="unexpected keys: fc.bias"):
        load_original_checkpoint(tiny_model("stgcnpp", classifier="cosine"), path)
    # not strict: absent keys are allowed, shapes still are checked
    result = load_original_checkpoint(tiny_model("stgcnpp", classifier="cosine"), path, strict=False)
    assert result.unexpected_keys == ["fc.bias"]
    with pytest.raises(TypeError, match="state dict"):
        load_original_checkpoint(tiny_model("agcn"), {"state_dict": [1, 2]})


# --------------------------------------------------------------------------- every layout


@pytest.mark.parametrize("layout", sorted(TYPICAL_INPUT))
@pytest.mark.parametrize("name", BACKBONES)
def test_every_layout_builds_and_gives_logits_and_gradcam_scores(name, layout):
    assert set(TYPICAL_INPUT) == set(available_layouts())
    persons, channels = TYPICAL_INPUT[layout]
    torch.manual_seed(0)
    model = tiny_model(name, layout=layout, num_persons=persons, in_channels=channels)
    V = model.num_joints
    x = torch.randn(3, channels, 12, V, persons)
    y = torch.tensor([0, 3, 6])
    logits = model(x)
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()
    features = model.forward_features(x)
    assert features.shape == (3 * persons, model.out_channels, 3, V)  # T: 12 -> 6 -> 3
    torch.testing.assert_close(model.head(features, persons), logits)
    combinations = PartCombinations.from_layout(layout)
    scores = gradcam_part_scores(model, x, y, combinations)
    assert scores.shape == (3, len(combinations)) and (scores >= 0).all() and torch.isfinite(scores).all()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", BACKBONES)
def test_wrong_input_shape_and_width_are_rejected(name):
    model = tiny_model(name)
    with pytest.raises(ValueError, match="V, M"):
        model(torch.randn(2, 3, 8, 20, 2))
    with pytest.raises(ValueError, match="base_channels"):
        tiny_model(name, base_channels=2)


def test_fresh_stgcnpp_classifier_and_blocks_follow_pyskl():
    torch.manual_seed(0)
    model = STGCNPP(60, "ntu25", 2)
    assert model.fc.weight.std().item() == pytest.approx(0.01, rel=0.05) and torch.all(model.fc.bias == 0)
    assert model.data_bn.num_features == 75  # one normaliser per (joint, channel), shared by persons
    assert [block.gcn.out_channels for block in model.gcn] == [64, 64, 64, 64, 128, 128, 128, 256, 256, 256]
    assert model.gcn[0].residual is None and model.gcn[4].residual.conv.stride == (2, 1)
    # mstcn: the first branch takes the remainder of 64 over 6 branches
    assert [branch[0].out_channels if isinstance(branch, nn.Sequential) else branch.out_channels
            for branch in model.gcn[0].tcn.branches] == [14, 10, 10, 10, 10, 10]
    assert model.gcn[0].tcn.branches[3][3].conv.dilation == (4, 1)


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


def test_config_checks_the_backbone_arguments():
    config = load_config(None, ["model.name=stgcnpp", "model.args.base_channels=16"])
    assert config.model.name == "stgcnpp" and config.model.args["base_channels"] == 16
    load_config(None, ["model.name=agcn", "model.args={base_channels: 16, num_blocks: 4}"])
    with pytest.raises(ConfigError, match="adaptive"):
        load_config(None, ["model.name=stgcnpp", "model.args.adaptive=false"])
    assert {"stgcnpp", "agcn", "ctrgcn"} <= set(available_models())


# one batch of 16 of the 28 training samples: each run is a single optimiser step, then evaluation
ONE_STEP = ["train.batch_size=16", "train.threads=1", "log.plots=false", "method.warmup_epochs=0"]
RUNS = {
    "stmix": ["method.name=stmix"],
    "shapmix_exact": ["method.name=shapmix", "method.shapley_estimator=exact", "method.estimate_fraction=1"],
    "shapmix_sampled": ["method.name=shapmix", "method.shapley_estimator=sampled"],
    "shapmix_random": ["method.name=shapmix", "method.guidance=random"],
    "shapmix_gradcam": ["method.name=shapmix", "method.guidance=gradcam"],
    "glmc": ["method.name=glmc", "loss.name=ce"],
    "ldam_cosine": ["loss.name=ldam", "model.args.classifier=cosine"],
}


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("name", BACKBONES)
def test_one_training_step_through_the_engine(name, run, tiny_data, tmp_path):
    extra = [f"model.name={name}", *ONE_STEP, *RUNS[run]]
    trainer = Trainer(tiny_config(tiny_data, epochs=1, extra=extra), tmp_path / "run")
    assert trainer.steps_per_epoch == 1
    before = {key: value.clone() for key, value in trainer.model.state_dict().items()}
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    assert np.isfinite(trainer.history[0]["loss"]) and np.isfinite(result["test"]["top1"])
    after = trainer.model.state_dict()
    for key in ("fc.weight", "data_bn.weight", "data_bn.running_mean"):
        assert not torch.equal(before[key], after[key]), key
    if run in ("shapmix_exact", "shapmix_sampled", "shapmix_gradcam"):
        assert trainer.method.table.counts.sum() > 0  # the saliency table was fed
