"""SkeleMix (Ta-CNN's upper/lower-body mixing) and SkeleMixCLR-style cut-and-paste, as batch mixers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shapmix.config import ConfigError, MethodConfig, load_config
from shapmix.losses import BalancedSoftmax, CrossEntropy
from shapmix.methods import build_method
from shapmix.mixing import SkeleMix, SkeleMixCLR, lower_body_mask
from shapmix.mixing.stmix import mixed_targets
from shapmix.models import build_model
from shapmix.skeleton.layouts import Layout, available_layouts, get_layout

NUM_CLASSES = 16
FRAMES = 64  # SkeleMixCLR's 16 segments of 4 frames
PERSONS = 2

# The lower body (both legs: hips, knees, ankles, feet), written out per layout from its joint names.
LOWER_BODY = {
    "ntu25": set(range(12, 20)),
    "kinect_v1": set(range(12, 20)),
    "utd_mhad": set(range(12, 20)),
    "msr_action3d": {4, 5, 13, 14, 15, 16, 17, 18},
    "coco17": set(range(11, 17)),
    "openpose18": set(range(8, 14)),
}


def _batch(layout: str, n: int = 16, frames: int = FRAMES, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, frames, get_layout(layout).num_joints, PERSONS, generator=g)
    return x, torch.arange(n) % NUM_CLASSES  # distinct labels, so a target names its sources


def test_every_layout_of_the_library_has_its_lower_body_listed_here():
    assert set(available_layouts()) == set(LOWER_BODY)


@pytest.mark.parametrize("layout", sorted(LOWER_BODY))
def test_lower_body_is_the_legs_with_the_hips(layout):
    mask = lower_body_mask(layout)
    assert set(torch.nonzero(mask).flatten().tolist()) == LOWER_BODY[layout]
    names = [get_layout(layout).joint_names[j] for j in LOWER_BODY[layout]]
    assert all(any(word in name for word in ("hip", "knee", "ankle", "foot")) for name in names)


@pytest.mark.parametrize("layout", sorted(LOWER_BODY))
def test_skelemix_keeps_the_source_lower_body_and_takes_the_partner_upper_body(layout):
    x, y = _batch(layout)
    mixer = SkeleMix(layout, NUM_CLASSES, fraction=0.25, seed=1)
    x_mixed, targets, info = mixer.mix_with_info(x, y)

    lower = sorted(LOWER_BODY[layout])
    upper = sorted(set(range(x.shape[3])) - LOWER_BODY[layout])
    mixed = info.lam > 0
    assert int(mixed.sum()) == 4  # 0.25 of 16 rows
    for i in range(len(x)):
        if mixed[i]:
            j = int(info.partner[i])
            assert j != i
            assert torch.equal(x_mixed[i][:, :, lower], x[i][:, :, lower])  # the source's legs, untouched
            assert torch.equal(x_mixed[i][:, :, upper], x[j][:, :, upper])  # the partner's upper body
        else:
            assert torch.equal(x_mixed[i], x[i])
    # targets: rows sum to 1; a mixed row gives its partner the upper body's share of the joints
    assert torch.allclose(targets.sum(dim=1), torch.ones(len(x)))
    share = len(upper) / x.shape[3]
    expected_lam = torch.where(mixed, share, 0.0)
    assert torch.allclose(info.lam, expected_lam.double())
    expected = mixed_targets(y, info.partner, expected_lam, NUM_CLASSES)
    assert torch.allclose(targets, expected)
    assert torch.allclose(targets[mixed, y[mixed]], torch.full((4,), 1 - share))


@pytest.mark.parametrize(("fraction", "batch", "mixed_rows"), [
    (1 / 16, 64, 4),  # Ta-CNN's setting on its batch of 64
    (1 / 16, 16, 1),
    (1 / 16, 8, 1),  # at least one row, so a small (per-GPU) batch is still mixed
    (1 / 16, 100, 7),
    (0.5, 10, 5),
    (1.0, 6, 6),
])
def test_skelemix_mixes_the_share_of_the_batch_it_is_set_to(fraction, batch, mixed_rows):
    assert SkeleMix("ntu25", NUM_CLASSES, fraction=fraction).mixed_count(batch) == mixed_rows
    x, y = _batch("ntu25", n=batch, frames=8)
    mixer = SkeleMix("ntu25", NUM_CLASSES, fraction=fraction, seed=3)
    chosen = []
    for _ in range(20):
        x_mixed, _, info = mixer.mix_with_info(x, y)
        changed = (x_mixed != x).flatten(1).any(dim=1)
        assert torch.equal(changed, info.lam > 0)
        assert int(changed.sum()) == mixed_rows
        chosen.append(changed)
    if mixed_rows < batch:  # different rows in different batches
        assert any(not torch.equal(rows, chosen[0]) for rows in chosen)


def test_skelemix_default_is_one_sixteenth():
    assert MethodConfig().skelemix_fraction == 1 / 16
    assert SkeleMix("ntu25", NUM_CLASSES).fraction == 1 / 16


def _combination_joints(mixer: SkeleMixCLR, index: int) -> list[int]:
    layout = mixer.layout
    parts = mixer.combinations.combinations[index]
    return sorted(j for p in parts for j in layout.parts[layout.part_names[p]])


@pytest.mark.parametrize("draw", ["per_batch", "per_sample"])
@pytest.mark.parametrize("layout", sorted(LOWER_BODY))
def test_skelemixclr_pastes_exactly_the_drawn_parts_in_the_drawn_clip(layout, draw):
    x, y = _batch(layout)
    mixer = SkeleMixCLR(layout, NUM_CLASSES, draw=draw, seed=2)
    for _ in range(3):
        x_mixed, targets, info = mixer.mix_with_info(x, y)
        expected = x.clone()
        num_joints = x.shape[3]
        for i in range(len(x)):
            j = int(info.partner[i])
            assert j != i
            start, length = int(info.window_start[i]), int(info.window_length[i])
            # the clip: 7..11 whole segments of 4 frames of the 64, the same frames of the partner
            assert start % 4 == 0 and length % 4 == 0 and 7 <= length // 4 <= 11 and start + length <= FRAMES
            assert (int(info.donor_start[i]), int(info.donor_length[i])) == (start, length)
            joints = _combination_joints(mixer, int(info.combination[i]))
            assert 2 <= len(mixer.combinations.combinations[int(info.combination[i])]) <= 3
            assert info.joint_mask[i].nonzero().flatten().tolist() == joints
            expected[i][:, start : start + length, joints] = x[j][:, start : start + length, joints]
            assert math.isclose(float(info.lam[i]), length * len(joints) / (FRAMES * num_joints))
        assert torch.equal(x_mixed, expected)
        assert torch.allclose(targets.sum(dim=1), torch.ones(len(x)))
        assert torch.allclose(targets, mixed_targets(y, info.partner, info.lam, NUM_CLASSES))
        shared = all(
            bool((values == values[0]).all()) for values in (info.window_start, info.window_length, info.combination)
        )
        assert shared == (draw == "per_batch")


def test_skelemixclr_draws_a_part_count_then_parts_uniformly():
    mixer = SkeleMixCLR("ntu25", NUM_CLASSES, seed=0)
    combinations = mixer.draw_combinations(20000, torch.Generator().manual_seed(0))
    sizes = torch.tensor([len(mixer.combinations.combinations[c]) for c in combinations.tolist()])
    assert abs(float((sizes == 2).double().mean()) - 0.5) < 0.02
    counts = torch.bincount(combinations, minlength=len(mixer.combinations)).double()
    assert torch.allclose(counts / counts.sum(), torch.full_like(counts, 1 / 20), atol=0.006)
    # with 1..4 parts the sizes stay uniform although there are 5, 10, 10 and 5 combinations of them
    wide = SkeleMixCLR("ntu25", NUM_CLASSES, min_parts=1, max_parts=4, seed=0)
    drawn = wide.draw_combinations(20000, torch.Generator().manual_seed(1))
    sizes = torch.tensor([len(wide.combinations.combinations[c]) for c in drawn.tolist()])
    assert torch.allclose(torch.bincount(sizes)[1:].double() / len(sizes), torch.full((4,), 0.25, dtype=torch.float64), atol=0.02)


def test_skelemixclr_default_clip_is_the_authors_7_to_11_of_16_segments():
    mixer = SkeleMixCLR("ntu25", NUM_CLASSES, seed=0)
    x, y = _batch("ntu25", n=4)
    lengths = {int(mixer.mix_with_info(x, y)[2].window_length[0]) // 4 for _ in range(200)}
    assert lengths == set(range(7, 12))


@pytest.mark.parametrize("mixer_type", [SkeleMix, SkeleMixCLR])
def test_mixers_resume_their_random_stream(mixer_type):
    x, y = _batch("ntu25")
    mixer = mixer_type("ntu25", NUM_CLASSES, seed=5)
    mixer(x, y)
    state = mixer.state_dict()
    after = mixer(x, y)
    resumed = mixer_type("ntu25", NUM_CLASSES, seed=99)
    resumed.load_state_dict(state)
    again = resumed(x, y)
    assert torch.equal(after[0], again[0]) and torch.equal(after[1], again[1])


def test_bad_settings_are_refused_with_the_reason():
    no_legs = Layout(
        name="arms_only", joint_names=("a", "b", "c"), bones=((1, 0), (2, 0)), root=0, center=0,
        parts={"torso": (0,), "left_arm": (1,), "right_arm": (2,)},
    )
    with pytest.raises(ValueError, match="arms_only.*left_leg"):
        SkeleMix(no_legs, NUM_CLASSES)
    with pytest.raises(ValueError, match="fraction"):
        SkeleMix("ntu25", NUM_CLASSES, fraction=0.0)
    with pytest.raises(ValueError, match="clip_fraction"):
        SkeleMixCLR("ntu25", NUM_CLASSES, clip_fraction=(0.8, 0.5))
    with pytest.raises(ValueError, match="25 joints, batch has 17"):
        SkeleMix("ntu25", NUM_CLASSES)(*_batch("coco17"))
    with pytest.raises(ConfigError, match="skelemix_fraction"):
        load_config(None, ["method.skelemix_fraction=0"])
    with pytest.raises(ConfigError, match="skelemixclr_min_parts"):
        load_config(None, ["method.skelemixclr_min_parts=3", "method.skelemixclr_max_parts=2"])


BACKBONE_ARGS = {
    "ctrgcn": dict(base_channels=8, num_blocks=3),
    "stgcnpp": dict(base_channels=8, num_blocks=3),
    "agcn": dict(base_channels=8, num_blocks=3),
    "infogcn": dict(base_channels=8, num_blocks=3),
    "hdgcn": dict(base_channels=8, num_blocks=3),
}


@pytest.mark.parametrize("method_name", ["skelemix", "skelemixclr"])
@pytest.mark.parametrize("backbone", sorted(BACKBONE_ARGS))
def test_one_training_step_on_every_backbone(backbone, method_name):
    torch.manual_seed(0)
    layout = get_layout("ntu25")
    model = build_model(backbone, NUM_CLASSES, layout, PERSONS, **BACKBONE_ARGS[backbone])
    counts = np.arange(NUM_CLASSES, 0, -1) * 3
    method = build_method(MethodConfig(name=method_name, skelemix_fraction=0.25), NUM_CLASSES, counts, layout, seed=0)
    x, y = _batch("ntu25", n=8, frames=16)
    loss, logits = method.training_loss(model, x, y, BalancedSoftmax(counts), epoch=0)
    loss.backward()
    assert torch.isfinite(loss) and logits.shape == (8, NUM_CLASSES)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_skelemix_trains_on_the_mixed_batch_alone_and_skelemixclr_on_clean_plus_mixed():
    torch.manual_seed(0)
    layout = get_layout("ntu25")
    model = build_model("ctrgcn", NUM_CLASSES, layout, PERSONS, base_channels=8, num_blocks=3).eval()
    counts = np.ones(NUM_CLASSES)
    x, y = _batch("ntu25", n=8, frames=16)
    criterion = CrossEntropy()
    rows = []
    model.register_forward_hook(lambda module, inputs, output: rows.append(len(inputs[0])))
    for name, expected_rows in (("skelemix", 8), ("skelemixclr", 16)):
        config = MethodConfig(name=name, skelemix_fraction=0.25)
        method = build_method(config, NUM_CLASSES, counts, layout, seed=0)
        twin = build_method(config, NUM_CLASSES, counts, layout, seed=0)  # draws the same numbers
        rows.clear()
        loss, _ = method.training_loss(model, x, y, criterion, epoch=0)
        assert rows == [expected_rows]
        x_mixed, targets = twin.mixer(x, y)
        with torch.no_grad():
            if name == "skelemix":
                expected = criterion(model(x_mixed), targets)
            else:
                expected = criterion(model(x), y) + criterion(model(x_mixed), targets)
        assert torch.allclose(loss, expected, atol=1e-6)


def test_presets_name_the_authors_settings_and_stmix_loss():
    from shapmix.bench.presets import PRESETS, preset_config

    stmix = preset_config(PRESETS["stmix"], 0, None)
    skelemix = preset_config(PRESETS["skelemix"], 0, None)
    assert (skelemix.method.name, skelemix.method.skelemix_fraction) == ("skelemix", 1 / 16)
    clr = preset_config(PRESETS["skelemixclr"], 0, None).method
    assert (clr.name, clr.skelemixclr_min_parts, clr.skelemixclr_max_parts) == ("skelemixclr", 2, 3)
    assert (clr.skelemixclr_segment_frames, clr.skelemixclr_clip_fraction) == (4, (7 / 16, 11 / 16))
    assert clr.skelemixclr_draw == "per_batch"
    # the same loss as the stmix preset, so the mixing is the only difference (Table 7's comparison)
    for name in ("skelemix", "skelemixclr"):
        assert preset_config(PRESETS[name], 0, None).loss == stmix.loss


def test_an_interrupted_per_sample_skelemixclr_run_resumes_exactly(tmp_path):
    # the default settings of both methods resume in test_engine's test of every method
    from helpers import assert_resumed_run_matches, make_tiny_dataset, tiny_config

    data = make_tiny_dataset(tmp_path / "data")
    options = ["method.name=skelemixclr", "method.skelemixclr_draw=per_sample", "method.partner=cycle"]
    config = tiny_config(data, epochs=2, extra=[*options, "data.window=16"])
    _, expected, interrupted = assert_resumed_run_matches(config, tmp_path)
    # the mixer's stream moved on in the second epoch, and came back with the resumed run
    assert not torch.equal(expected["method"]["mixer"]["generator"], interrupted["method"]["mixer"]["generator"])
