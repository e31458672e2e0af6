"""Tests for part combinations, Mixup/CutMix/ST-Mix, Shap-Mix's tail-aware policy and the table."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shapmix.mixing import (
    NO_COMBINATION,
    NO_COMPLEMENT,
    CutMix,
    Mixup,
    PartCombinations,
    SaliencyTable,
    ShapMix,
    STMix,
    draw_partners,
    paste_resized,
)
from shapmix.mixing.saliency import AUTHORS_TAU, DEFAULT_TAU, policy_sharpness, sampling_distribution
from shapmix.skeleton.layouts import get_layout

LAYOUT = get_layout("ntu25")
NUM_JOINTS = LAYOUT.num_joints
SAMPLE_OFFSET = 10.0  # sample i holds values in [i * SAMPLE_OFFSET, i * SAMPLE_OFFSET + 1)


def distinct_batch(num_samples: int, frames: int = 64, persons: int = 2, seed: int = 0) -> torch.Tensor:
    """A batch in which no value of a sample can come from another sample (even interpolated)."""
    rng = torch.Generator().manual_seed(seed)
    x = torch.rand(num_samples, 3, frames, NUM_JOINTS, persons, generator=rng)
    return x + SAMPLE_OFFSET * torch.arange(num_samples, dtype=torch.float32)[:, None, None, None, None]


def changed_fraction(x: torch.Tensor, x_mixed: torch.Tensor) -> torch.Tensor:
    return (x != x_mixed).flatten(1).double().mean(dim=1)


def resized_donor(x: torch.Tensor, j: int, start: int, length: int, size: int) -> torch.Tensor:
    """``x[j]`` frames ``start .. start + length`` resized to ``size`` frames with F.interpolate."""
    clip = x[j, :, start : start + length]  # (C, L, V, M)
    c, _, v, m = clip.shape
    flat = clip.permute(0, 2, 3, 1).reshape(1, c * v * m, length)
    resized = F.interpolate(flat, size=size, mode="linear", align_corners=False)
    return resized.reshape(c, v, m, size).permute(0, 3, 1, 2)


# --------------------------------------------------------------------------- part combinations


def test_twenty_combinations_with_masks_counts_and_complements():
    combos = PartCombinations.from_layout(LAYOUT)
    assert len(combos) == 20
    assert combos.combinations[:2] == ((0, 1), (0, 2)) and combos.combinations[-1] == (2, 3, 4)
    part_sizes = [len(joints) for joints in LAYOUT.parts.values()]
    for index, combo in enumerate(combos.combinations):
        joints = sorted(j for p in combo for j in LAYOUT.parts[LAYOUT.part_names[p]])
        assert combos.joint_masks[index].nonzero().flatten().tolist() == joints
        assert combos.joint_counts[index] == sum(part_sizes[p] for p in combo)
        other = int(combos.complement[index])
        assert set(combos.combinations[other]) == set(range(5)) - set(combo)
        assert not (combos.joint_masks[index] & combos.joint_masks[other]).any()
        assert (combos.joint_masks[index] | combos.joint_masks[other]).all()
        assert combos.bitmasks[index] == sum(1 << p for p in combo)
    assert combos.has_all_complements
    assert combos.part_masks.sum(dim=0).tolist() == [1] * NUM_JOINTS
    assert combos.names[0] == "torso+left_arm"
    assert combos.index_of({4, 3}) == combos.combinations.index((3, 4))
    with pytest.raises(KeyError):
        combos.index_of((0,))


def test_missing_complements_are_marked():
    combos = PartCombinations.from_layout("coco17", min_parts=1, max_parts=3)
    assert len(combos) == 5 + 10 + 10
    singles = [i for i, combo in enumerate(combos.combinations) if len(combo) == 1]
    assert (combos.complement[singles] == NO_COMPLEMENT).all()
    assert not combos.has_all_complements
    with pytest.raises(ValueError, match="complements"):
        ShapMix("coco17", [1, 2, 3], guidance="random", min_parts=1, max_parts=3)
    with pytest.raises(ValueError):
        PartCombinations.from_layout(LAYOUT, min_parts=3, max_parts=2)


# --------------------------------------------------------------------------- partners, Mixup, CutMix


@pytest.mark.parametrize("mode", ["shift", "cycle"])
def test_partners_are_permutations_without_fixed_points(mode):
    generator = torch.Generator().manual_seed(1)
    for size in (2, 3, 17):
        for _ in range(20):
            partner = draw_partners(size, generator, mode)
            assert sorted(partner.tolist()) == list(range(size))
            assert (partner != torch.arange(size)).all()
    assert draw_partners(1, generator, mode).tolist() == [0]


def test_mixup_is_a_per_sample_convex_combination():
    x, y = distinct_batch(6, frames=8), torch.arange(6)
    x_mixed, targets, info = Mixup(6, alpha=0.4, seed=2).mix_with_info(x, y)
    lam = info.lam.float()[:, None, None, None, None]
    torch.testing.assert_close(x_mixed, (1 - lam) * x + lam * x[info.partner])
    assert len(info.lam.unique()) == 6 and info.global_mix.all()
    torch.testing.assert_close(targets[torch.arange(6), y], (1 - info.lam).float())
    torch.testing.assert_close(targets[torch.arange(6), y[info.partner]], info.lam.float())


def test_mixup_beta_ratio_follows_alpha():
    x, y = torch.zeros(4000, 1, 1, 1, 1), torch.zeros(4000, dtype=torch.int64)
    lam = Mixup(2, alpha=0.2, seed=3).mix_with_info(x, y)[2].lam
    # Beta(0.2, 0.2): mean 1/2, variance 1 / (4 * 1.4) = 0.179 (uniform: 0.083)
    assert lam.mean() == pytest.approx(0.5, abs=0.03)
    assert lam.var() == pytest.approx(1 / 5.6, abs=0.015)


def test_cutmix_lam_is_the_replaced_fraction():
    x, y = distinct_batch(8, frames=20), torch.arange(8)
    x_mixed, targets, info = CutMix(8, seed=4).mix_with_info(x, y)
    torch.testing.assert_close(changed_fraction(x, x_mixed), info.lam)
    for i in range(8):
        j, start, length = int(info.partner[i]), int(info.window_start[i]), int(info.window_length[i])
        joints = info.joint_mask[i]
        frames = slice(start, start + length)
        torch.testing.assert_close(x_mixed[i][:, frames][:, :, joints], x[j][:, frames][:, :, joints])
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(8))


# --------------------------------------------------------------------------- ST-Mix


def test_stmix_lam_equals_the_fraction_of_changed_entries():
    x, y = distinct_batch(16), torch.arange(16)
    mixer = STMix(LAYOUT, 16, p_mixup=0.0, seed=5)
    x_mixed, targets, info = mixer.mix_with_info(x, y)
    assert not info.global_mix.any()
    torch.testing.assert_close(changed_fraction(x, x_mixed), info.lam)
    expected = info.window_length * mixer.combinations.joint_counts[info.combination] / (64 * NUM_JOINTS)
    torch.testing.assert_close(info.lam, expected.double())
    rows = torch.arange(16)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(16))
    torch.testing.assert_close(targets[rows, y], (1 - info.lam).float())
    torch.testing.assert_close(targets[rows, y[info.partner]], info.lam.float())
    assert ((targets > 0).sum(dim=1) == 2).all()


def test_stmix_pastes_the_donor_clip_resized_into_the_window():
    x, y = distinct_batch(6), torch.arange(6)
    x_mixed, _, info = STMix(LAYOUT, 6, p_mixup=0.0, seed=6).mix_with_info(x, y)
    assert (info.donor_length > info.window_length).any(), "no down-sampling drawn: seed too lucky"
    for i in range(6):
        start, length = int(info.window_start[i]), int(info.window_length[i])
        joints = info.joint_mask[i]
        expected = resized_donor(x, int(info.partner[i]), int(info.donor_start[i]), int(info.donor_length[i]), length)
        window = x_mixed[i][:, start : start + length]
        torch.testing.assert_close(window[:, :, joints], expected[:, :, joints], rtol=0, atol=1e-4)
        torch.testing.assert_close(window[:, :, ~joints], x[i][:, start : start + length][:, :, ~joints])
        outside = torch.ones(64, dtype=torch.bool)
        outside[start : start + length] = False
        torch.testing.assert_close(x_mixed[i][:, outside], x[i][:, outside])


def test_stmix_window_ranges_on_64_frames():
    x, y = torch.zeros(2000, 1, 64, NUM_JOINTS, 1), torch.zeros(2000, dtype=torch.int64)
    mixer = STMix(LAYOUT, 1, p_mixup=0.0, seed=7)
    assert mixer.window_segments(64) == (16, 7, 11)
    info = mixer.mix_with_info(x, y)[2]
    assert set((info.window_length // 4).tolist()) == set(range(7, 12))
    assert (info.window_length % 4 == 0).all() and (info.window_start % 4 == 0).all()
    assert (info.donor_start % 4 == 0).all()
    assert (info.donor_length >= info.window_length).all() and (info.donor_length <= 64).all()
    assert (info.window_start + info.window_length <= 64).all()
    assert (info.donor_start + info.donor_length <= 64).all()
    assert (info.donor_length == 64).any()
    assert len(info.combination.unique()) == 20


def test_stmix_mixup_branch_probability_and_content():
    x, y = distinct_batch(8, frames=8), torch.arange(8)
    x_mixed, _, info = STMix(LAYOUT, 8, p_mixup=1.0, seed=8).mix_with_info(x, y)
    assert info.global_mix.all() and (info.combination == NO_COMBINATION).all()
    lam = info.lam.float()[:, None, None, None, None]
    torch.testing.assert_close(x_mixed, (1 - lam) * x + lam * x[info.partner])
    zeros = torch.zeros(4000, 1, 8, NUM_JOINTS, 1)
    many = STMix(LAYOUT, 1, seed=9).mix_with_info(zeros, torch.zeros(4000, dtype=torch.int64))[2]
    assert many.global_mix.double().mean() == pytest.approx(0.25, abs=0.025)


def test_same_seed_same_output_and_resume_from_state():
    x, y = distinct_batch(8, frames=16), torch.arange(8)
    first, second = STMix(LAYOUT, 8, seed=10), STMix(LAYOUT, 8, seed=10)
    out_a, out_b = first(x, y), second(x, y)
    assert torch.equal(out_a[0], out_b[0]) and torch.equal(out_a[1], out_b[1])
    assert not torch.equal(STMix(LAYOUT, 8, seed=11)(x, y)[0], out_a[0])

    state = first.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    resumed = STMix(LAYOUT, 8, seed=99)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(resumed(x, y)[0], first(x, y)[0])


def test_explicit_generator_and_validation():
    generator = torch.Generator().manual_seed(12)
    mixer = STMix(LAYOUT, 4, generator=generator)
    assert mixer.generator is generator
    with pytest.raises(ValueError):
        STMix(LAYOUT, 4, generator=generator, seed=1)
    with pytest.raises(ValueError, match="alpha"):
        Mixup(4, alpha=0.0)
    with pytest.raises(ValueError):
        mixer(torch.zeros(2, 3, 8, 17, 1), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError):
        mixer(torch.zeros(2, 3, 8, NUM_JOINTS, 1), torch.zeros(2, dtype=torch.int32))


def test_paste_resized_copies_unchanged_for_equal_lengths():
    x = distinct_batch(3, frames=10)
    partner = torch.tensor([1, 2, 0])
    joints = torch.zeros(3, NUM_JOINTS, dtype=torch.bool)
    joints[:, 3] = True
    start, length = torch.tensor([0, 4, 7]), torch.tensor([5, 3, 3])
    out = paste_resized(x, partner, joints, start, length, start, length)
    for i, j in enumerate(partner.tolist()):
        s, n = int(start[i]), int(length[i])
        assert torch.equal(out[i][:, s : s + n, 3], x[j][:, s : s + n, 3])
    assert (out != x).flatten(1).sum(dim=1).tolist() == [3 * 2 * n for n in length.tolist()]


def resized_donor_nearest(x: torch.Tensor, j: int, start: int, length: int, size: int) -> torch.Tensor:
    """Like :func:`resized_donor` with F.interpolate's default (nearest) mode, as the authors."""
    clip = x[j, :, start : start + length]
    c, _, v, m = clip.shape
    resized = F.interpolate(clip.permute(0, 2, 3, 1).reshape(1, c * v * m, length), size=size)
    return resized.reshape(c, v, m, size).permute(0, 3, 1, 2)


@pytest.mark.parametrize("donor, window", [(44, 28), (64, 28), (28, 28), (36, 44), (60, 52), (5, 3)])
def test_nearest_donor_resize_is_f_interpolate_nearest(donor, window):
    x = distinct_batch(2, frames=64)
    joints = torch.ones(2, NUM_JOINTS, dtype=torch.bool)
    start, donor_start = torch.tensor([4, 64 - window]), torch.tensor([0, 64 - donor])
    out = paste_resized(
        x, torch.tensor([1, 0]), joints, start, torch.tensor([window] * 2), donor_start, torch.tensor([donor] * 2),
        resize="nearest",
    )
    for i, j in enumerate((1, 0)):
        s = int(start[i])
        expected = resized_donor_nearest(x, j, int(donor_start[i]), donor, window)
        assert torch.equal(out[i][:, s : s + window], expected)  # copies: exactly equal
        assert torch.equal(out[i][:, :s], x[i][:, :s]) and torch.equal(out[i][:, s + window :], x[i][:, s + window :])
    with pytest.raises(ValueError, match="resize"):
        paste_resized(x, torch.tensor([1, 0]), joints, start, start, start, start, resize="cubic")


def test_per_batch_draw_shares_the_random_parameters_of_the_batch():
    mixer = STMix(LAYOUT, 8, p_mixup=0.5, draw="per_batch", seed=6)
    x, y = distinct_batch(8, frames=32), torch.arange(8)
    branches = set()
    for _ in range(12):
        info = mixer.mix_with_info(x, y)[2]
        assert len(set(info.global_mix.tolist())) == 1
        branches.add(bool(info.global_mix[0]))
        for field in ("lam", "window_start", "window_length", "donor_start", "donor_length", "combination"):
            assert len(set(getattr(info, field).tolist())) == 1, field
    assert branches == {True, False}
    per_sample = STMix(LAYOUT, 8, p_mixup=0.5, seed=6).mix_with_info(x, y)[2]
    assert len(set(per_sample.window_start.tolist() + per_sample.combination.tolist())) > 2


def test_per_batch_shapmix_keeps_per_sample_guided_parts():
    labels = torch.tensor([0, 3, 1, 2, 3, 0, 2, 1])
    guided = shapmix(seed=7, draw="per_batch").mix_with_info(distinct_batch(8, frames=16), labels)[2]
    assert len(set(guided.window_start.tolist())) == 1
    assert len(set(guided.combination.tolist())) > 1  # each pair's tail class decides its parts
    warming_up = shapmix(seed=7, draw="per_batch")
    warming_up.guidance = "random"  # what ShapMixMethod sets during warm-up: one combination for the batch
    assert len(set(warming_up.mix_with_info(distinct_batch(8, frames=16), labels)[2].combination.tolist())) == 1


def test_draw_and_resize_options_are_checked():
    with pytest.raises(ValueError, match="draw"):
        STMix(LAYOUT, 4, draw="per_pair")
    with pytest.raises(ValueError, match="resize"):
        STMix(LAYOUT, 4, donor_resize="cubic")


# --------------------------------------------------------------------------- Shap-Mix policy


NUM_CLASSES = 4
COUNTS = [5, 20, 80, 320]  # increasing with the class index: class 0 is the TAIL
SALIENT = [0, 9, 12, 17]  # the salient combination of each class
PEAKED_TAU = 0.01  # softmax(table / tau) puts all but e^-100 of the mass on SALIENT


def peaked_table(combos: PartCombinations) -> SaliencyTable:
    table = SaliencyTable.from_combinations(NUM_CLASSES, combos)
    table.values[torch.arange(NUM_CLASSES), torch.tensor(SALIENT)] = 1.0
    return table


def shapmix(counts=COUNTS, **options) -> ShapMix:
    combos = PartCombinations.from_layout(LAYOUT)
    return ShapMix(LAYOUT, counts, peaked_table(combos), tau=PEAKED_TAU, p_mixup=0.0, **options)


def test_tail_parts_are_intact_in_both_branches():
    labels = torch.tensor([0, 3, 1, 2, 3, 0, 2, 1])
    x = distinct_batch(len(labels))
    mixer = shapmix(seed=13, partner="cycle")
    x_mixed, _, info = mixer.mix_with_info(x, labels)
    counts = torch.tensor(COUNTS)
    head_targets = tail_targets = 0
    for i in range(len(labels)):
        j = int(info.partner[i])
        start, length = int(info.window_start[i]), int(info.window_length[i])
        if counts[labels[i]] > counts[labels[j]]:  # head target: the tail's salient parts pasted
            salient = SALIENT[labels[j]]
            assert info.combination[i] == salient and info.sampled_combination[i] == salient
            joints = mixer.combinations.joint_masks[salient]
            donor = resized_donor(x, j, int(info.donor_start[i]), int(info.donor_length[i]), length)
            window = x_mixed[i][:, start : start + length]
            torch.testing.assert_close(window[:, :, joints], donor[:, :, joints], rtol=0, atol=1e-4)
            head_targets += 1
        else:  # tail target: its own salient parts kept in every frame, the complement pasted
            salient = SALIENT[labels[i]]
            assert info.sampled_combination[i] == salient
            assert info.combination[i] == mixer.combinations.complement[salient]
            joints = mixer.combinations.joint_masks[salient]
            assert torch.equal(x_mixed[i][:, :, joints], x[i][:, :, joints])
            assert not torch.equal(x_mixed[i][:, :, ~joints], x[i][:, :, ~joints])
            tail_targets += 1
    assert head_targets > 0 and tail_targets > 0


def test_head_and_tail_follow_counts_not_class_indices():
    labels = torch.tensor([0, 3])  # class 0 has the fewest samples
    mixer = shapmix(seed=14)
    info = mixer.mix_with_info(distinct_batch(2, frames=16), labels)[2]
    # sample 1 (class 3, head) receives the salient parts of class 0 (tail)
    assert info.combination[1] == SALIENT[0]
    # sample 0 (class 0, tail) keeps its salient parts: the complement of SALIENT[0] is pasted
    assert info.combination[0] == mixer.combinations.complement[SALIENT[0]]
    reversed_counts = shapmix(counts=COUNTS[::-1], seed=14).mix_with_info(distinct_batch(2, frames=16), labels)[2]
    assert reversed_counts.combination[0] == SALIENT[3]
    assert reversed_counts.combination[1] == mixer.combinations.complement[SALIENT[3]]


def test_equal_counts_paste_the_complement_of_the_target_class():
    labels = torch.tensor([1, 2])
    info = shapmix(counts=[5, 7, 7, 9], seed=15).mix_with_info(distinct_batch(2, frames=16), labels)[2]
    combos = PartCombinations.from_layout(LAYOUT)
    assert info.combination.tolist() == [int(combos.complement[SALIENT[1]]), int(combos.complement[SALIENT[2]])]


def test_guidance_callable_and_random():
    combos = PartCombinations.from_layout(LAYOUT)
    favourite = 5

    def scores(classes: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(classes), len(combos))
        out[:, favourite] = 1.0
        return out

    labels = torch.tensor([3, 0, 3, 0])
    mixer = ShapMix(LAYOUT, COUNTS, guidance=scores, tau=PEAKED_TAU, p_mixup=0.0, seed=16)
    info = mixer.mix_with_info(distinct_batch(4, frames=16), labels)[2]
    assert (info.sampled_combination == favourite).all()

    uniform = ShapMix(LAYOUT, COUNTS, guidance="random", p_mixup=0.0, seed=17)
    drawn = uniform.mix_with_info(torch.zeros(2000, 1, 8, NUM_JOINTS, 1), torch.arange(2000) % NUM_CLASSES)[2]
    frequency = torch.bincount(drawn.sampled_combination, minlength=20).double() / 2000
    torch.testing.assert_close(frequency, torch.full((20,), 0.05, dtype=torch.float64), rtol=0, atol=0.025)
    with pytest.raises(ValueError, match="SaliencyTable"):
        ShapMix(LAYOUT, COUNTS)


def test_shapmix_samples_from_the_softmax_of_the_table():
    combos = PartCombinations.from_layout(LAYOUT)
    table = SaliencyTable.from_combinations(NUM_CLASSES, combos)
    table.values[0, :2] = torch.tensor([0.2, 0.0])
    table.values[0, 2:] = -10.0
    mixer = ShapMix(LAYOUT, COUNTS, table, tau=0.2, p_mixup=0.0, seed=18)
    draws = 4000
    labels = torch.zeros(draws, dtype=torch.int64)  # all class 0: complement branch, P_0
    info = mixer.mix_with_info(torch.zeros(draws, 1, 8, NUM_JOINTS, 1), labels)[2]
    share = (info.sampled_combination == 0).double().mean()
    expected = float(torch.softmax(torch.tensor([1.0, 0.0]), dim=0)[0])  # e / (e + 1) = 0.731
    assert share == pytest.approx(expected, abs=0.03)
    assert set(info.sampled_combination.tolist()) == {0, 1}


def test_shapmix_checks_shapes():
    combos = PartCombinations.from_layout(LAYOUT)
    with pytest.raises(ValueError, match="class_counts"):
        ShapMix(LAYOUT, [[1, 2], [3, 4]], peaked_table(combos))
    with pytest.raises(ValueError, match="table"):
        ShapMix(LAYOUT, [*COUNTS, 1], peaked_table(combos))
    for counts in (np.array(COUNTS), torch.tensor(COUNTS)):
        mixer = ShapMix(LAYOUT, counts, peaked_table(combos))
        assert mixer.class_counts.tolist() == COUNTS and mixer.num_classes == NUM_CLASSES


# --------------------------------------------------------------------------- saliency table


class PretendOtherRank:
    """A context whose ``all_reduce_sum`` adds the statistics of one more (pretend) rank."""

    def __init__(self, table_shape, labels, combinations, estimates):
        other = SaliencyTable(*table_shape)
        self.stats = torch.zeros(2, other.values.numel())
        cell = labels * table_shape[1] + combinations
        self.stats[0].index_add_(0, cell, estimates)
        self.stats[1].index_add_(0, cell, torch.ones_like(estimates))
        self.calls = 0

    def all_reduce_sum(self, tensor):
        self.calls += 1
        tensor += self.stats
        return tensor


def test_table_ema_and_counts_by_hand():
    table = SaliencyTable(2, 3, momentum=0.9)
    table.update(torch.tensor([0, 0, 1]), torch.tensor([1, 1, 2]), torch.tensor([1.0, 3.0, 5.0]))
    expected = torch.zeros(2, 3)
    expected[0, 1], expected[1, 2] = 2.0, 5.0  # first update: the batch mean
    torch.testing.assert_close(table.values, expected)
    assert table.counts.tolist() == [[0, 1, 0], [0, 0, 1]]
    table.update(torch.tensor([0]), torch.tensor([1]), torch.tensor([4.0]))
    # the EMA from 0 is 0.9 * 0.1 * 2 + 0.1 * 4 with total weight 1 - 0.9**2 = 0.19
    expected[0, 1] = (0.09 * 2.0 + 0.1 * 4.0) / 0.19
    torch.testing.assert_close(table.values, expected)
    assert table.counts.tolist() == [[0, 2, 0], [0, 0, 1]]
    for _ in range(200):
        table.update(torch.tensor([0]), torch.tensor([1]), torch.tensor([4.0]))
    # long after the start it is the plain EMA and forgets the first mean
    assert float(table.values[0, 1]) == pytest.approx(4.0, abs=1e-6)
    assert float(table.weights[0, 1]) == pytest.approx(1.0, abs=1e-6)


def test_table_restart_lets_the_next_estimate_replace_each_value():
    table = SaliencyTable(1, 2, momentum=0.9)
    for value in (1.0, 1.0, 1.0):
        table.update(torch.tensor([0, 0]), torch.tensor([0, 1]), torch.tensor([value, value]))
    table.restart()
    assert table.values.tolist() == [[1.0, 1.0]]  # kept until the cell is updated again
    table.update(torch.tensor([0]), torch.tensor([0]), torch.tensor([5.0]))
    assert table.values.tolist() == [[5.0, 1.0]]
    assert table.counts.tolist() == [[4, 3]]


def test_table_reduces_sums_and_counts_before_the_ema():
    table = SaliencyTable(2, 3, momentum=0.9)
    table.values[0, 0], table.counts[0, 0], table.weights[0, 0] = 2.0, 1, 1.0  # a converged cell
    # this rank: one estimate 4; the other rank: three estimates 6 -> pooled mean 22 / 4 = 5.5
    context = PretendOtherRank((2, 3), torch.tensor([0, 0, 0]), torch.tensor([0, 0, 0]), torch.tensor([6.0, 6.0, 6.0]))
    table.update(torch.tensor([0]), torch.tensor([0]), torch.tensor([4.0]), context=context)
    assert context.calls == 1
    assert float(table.values[0, 0]) == pytest.approx(0.9 * 2.0 + 0.1 * 5.5)  # not 0.9*2 + 0.1*5
    assert table.counts[0, 0] == 2 and table.counts.sum() == 2


def test_sampling_distribution_and_its_sharpness():
    scores = torch.tensor([[0.1, 0.3, -0.2], [0.0, 0.0, 0.0], [50.0, 0.0, 0.0]])
    probs = sampling_distribution(scores, tau=0.2)
    assert probs.dtype == torch.float64
    torch.testing.assert_close(probs[0], torch.softmax(torch.tensor([0.5, 1.5, -1.0], dtype=torch.float64), dim=0))
    sharpness = policy_sharpness(probs)
    torch.testing.assert_close(sharpness.top_probability, probs.max(dim=1).values)
    assert sharpness.top_combination.tolist() == [1, 0, 0]
    entropy = sharpness.normalised_entropy
    assert entropy[1] == pytest.approx(1.0) and entropy[2] == pytest.approx(0.0, abs=1e-12)
    assert 0.0 < entropy[0] < 1.0
    with pytest.raises(ValueError, match="tau"):
        sampling_distribution(scores, tau=0.0)


def test_policy_is_exactly_the_softmax_of_the_tail_class_row():
    combos = PartCombinations.from_layout(LAYOUT)
    table = SaliencyTable.from_combinations(NUM_CLASSES, combos)
    table.values = torch.rand(NUM_CLASSES, len(combos), generator=torch.Generator().manual_seed(3)) / 8
    mixer = ShapMix(LAYOUT, COUNTS, table, tau=AUTHORS_TAU, p_mixup=0.0, seed=4)
    classes = torch.tensor([3, 0, 2, 2, 1])
    expected = torch.softmax(table.values[classes].double() / AUTHORS_TAU, dim=1)
    assert torch.equal(mixer.policy(classes), expected)
    # the draws come from the tail class's distribution: replay the generator's stream
    labels = torch.tensor([3, 0, 2, 1])
    partner = torch.tensor([1, 2, 3, 0])  # 3 (head) gets 0, 0 (tail) gets 2, 2 (head) gets 1, 1 (tail) gets 3
    tail_class = torch.tensor([0, 0, 1, 1])
    state = mixer.generator.get_state()
    sampled, _ = mixer.choose_combinations(labels, partner)
    mixer.generator.set_state(state)
    replayed = torch.multinomial(mixer.policy(tail_class), 1, generator=mixer.generator).squeeze(1)
    assert torch.equal(sampled, replayed)


@pytest.mark.parametrize(
    "tau, at_least, at_most", [(AUTHORS_TAU, 0.7, 1.0), (DEFAULT_TAU, 0.2, 0.3), (0.2, 0.0, 0.15)]
)
def test_authors_temperature_makes_a_clearly_salient_combination_dominate(tau, at_least, at_most):
    """Realistic per-joint values: the salient combination gains 0.8 of the true-class
    probability over 8 joints (0.1), the others about 0.01.  At the authors' 0.02 it is drawn
    about 80% of the time, at the default 0.05 about a quarter of the time (e^1.8 / (e^1.8 + 19)
    = 0.24), at 0.2 hardly more than uniform (5%)."""
    combos = PartCombinations.from_layout(LAYOUT)
    table = SaliencyTable.from_combinations(NUM_CLASSES, combos)
    table.values[:] = 0.01
    table.values[0, 3] = 0.1
    mixer = ShapMix(LAYOUT, COUNTS, table, tau=tau, p_mixup=0.0, seed=5)
    draws = 4000
    info = mixer.mix_with_info(torch.zeros(draws, 1, 8, NUM_JOINTS, 1), torch.zeros(draws, dtype=torch.int64))[2]
    share = float((info.sampled_combination == 3).double().mean())
    assert at_least <= share <= at_most
    probability = float(policy_sharpness(mixer.policy(torch.tensor([0]))).top_probability)
    assert share == pytest.approx(probability, abs=0.03)


def filled_table() -> SaliencyTable:
    combos = PartCombinations.from_layout(LAYOUT)
    table = SaliencyTable.from_combinations(3, combos, momentum=0.8, class_names=["drink water", "eat, meal", "wave"])
    rng = torch.Generator().manual_seed(19)
    table.values = torch.randn(3, 20, generator=rng) / 7
    table.counts = torch.randint(0, 50, (3, 20), generator=rng)
    table.weights = torch.rand(3, 20, generator=rng)
    return table


def test_table_state_dict_is_weights_only_safe(tmp_path):
    table = filled_table()
    torch.save(table.state_dict(), tmp_path / "table.pt")
    restored = SaliencyTable(3, 20)
    restored.load_state_dict(torch.load(tmp_path / "table.pt", weights_only=True))
    assert torch.equal(restored.values, table.values) and torch.equal(restored.counts, table.counts)
    assert torch.equal(restored.weights, table.weights)
    assert restored.momentum == 0.8
    with pytest.raises(ValueError):
        SaliencyTable(2, 20).load_state_dict(table.state_dict())


def test_table_json_and_csv_round_trip(tmp_path):
    table = filled_table()
    table.to_json(tmp_path / "table.json")
    table.to_csv(tmp_path / "table.csv")
    document = json.loads((tmp_path / "table.json").read_text())
    assert document["combinations"][0] == "torso+left_arm" and document["classes"][1] == "eat, meal"
    from_json = SaliencyTable.from_json(tmp_path / "table.json")
    from_csv = SaliencyTable.from_csv(tmp_path / "table.csv", momentum=0.8)
    for restored in (from_json, from_csv):
        assert torch.equal(restored.values, table.values) and torch.equal(restored.counts, table.counts)
        assert restored.class_names == table.class_names
        assert restored.combination_names == table.combination_names
        assert restored.momentum == table.momentum


def shapmix_method_setup(**options):
    """A small CTR-GCN, a batch of 8 (classes 0..4, head to tail) and a Shap-Mix training
    method factory ``make(**more_options)`` built like the trainer builds it."""
    from shapmix.config import MethodConfig
    from shapmix.methods import build_method
    from shapmix.models.ctrgcn import CTRGCN

    torch.manual_seed(0)
    counts = np.array([300, 120, 40, 9, 2])
    model = CTRGCN(num_classes=5, layout=LAYOUT, num_persons=1, base_channels=8, num_blocks=2)
    x = torch.randn(8, 3, 16, NUM_JOINTS, 1)
    y = torch.tensor([0, 0, 1, 3, 0, 4, 2, 1])

    def make(**more):
        config = MethodConfig(name="shapmix", **{**options, **more})
        return build_method(config, 5, counts, LAYOUT, seed=0, baseline=torch.zeros(3, 16, NUM_JOINTS, 1))

    return model, x, y, make


def test_shapmix_method_estimates_a_budget_of_samples_on_their_least_updated_cells():
    model, x, y, make = shapmix_method_setup(warmup_epochs=0, shapley_estimator="sampled")

    def method(fraction):
        return make(estimate_fraction=fraction)

    quarter = method(0.25)
    quarter.before_step(model, x, y, epoch=0, step=0)
    assert quarter.table.counts.sum().item() == 2  # round(0.25 * 8) samples, one cell each
    full = method(1.0)
    for step in range(5):
        full.before_step(model, x, y, epoch=0, step=step)
    # Every estimate of a class lands on a cell of its row not updated yet: class 0 has three
    # samples per batch, so after 5 batches 15 distinct cells of its row were updated once.
    assert full.table.counts[0].sum().item() == 15 and full.table.counts[0].max().item() == 1
    assert full.table.counts.sum().item() == 5 * 8


def test_exact_estimator_spends_the_sampled_budget_on_whole_rows_and_restarts_after_warm_up():
    # unclipped: an untrained model's marginal contributions are often all negative
    model, x, y, make = shapmix_method_setup(warmup_epochs=1, estimate_fraction=1.0, shapley_estimator="exact", clip=False)
    method = make()
    method.before_step(model, x, y, epoch=0, step=0)  # warm-up: 8 naive single-cell estimates
    assert method.table.counts.sum().item() == 8 and not method.shapley_started
    warm_up_values = method.table.values.clone()
    # 2 * 1.0 * 8 = 16 masked forwards a step buy half a row of 32: a row every second step
    method.before_step(model, x, y, epoch=1, step=1)
    assert method.shapley_started and method.table.counts.sum().item() == 8
    assert torch.equal(method.table.weights, torch.zeros_like(method.table.weights))  # restarted
    method.before_step(model, x, y, epoch=1, step=2)
    updated_rows = (method.table.counts.sum(dim=1) > 0) & (method.table.weights.sum(dim=1) > 0)
    assert updated_rows.sum().item() == 1
    row = int(updated_rows.nonzero())
    assert (method.table.weights[row] > 0).all()  # the whole row, every combination
    # the row's naive warm-up values were replaced, not averaged in
    changed = method.table.values[row] != warm_up_values[row]
    assert changed.all()
    state = method.state_dict()
    assert state["shapley_started"] and state["row_credit"] == pytest.approx(0.0)
