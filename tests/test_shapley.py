"""Tests for exact Shapley values, coalition worths and the Monte-Carlo estimator."""

from __future__ import annotations

from itertools import permutations
from math import factorial

import pytest
import torch
from torch import nn

from shapmix.mixing import (
    PartCombinations,
    class_balanced_subset,
    clipped_combination_shapley_values,
    coalition_joint_masks,
    coalition_values,
    combination_shapley_values,
    estimate_combination_shapley,
    exact_combination_rows,
    least_estimated_classes,
    least_estimated_combinations,
    mask_parts,
    mean_sequence,
    merged_player_weights,
    shapley_values,
)
from shapmix.models.ctrgcn import CTRGCN
from shapmix.skeleton.layouts import get_layout

NUM_PARTS = 5
NUM_COALITIONS = 2**NUM_PARTS
EXACT = {"rtol": 0.0, "atol": 1e-12}  # float64 games: only rounding differences


@pytest.fixture(autouse=True)
def _one_thread():
    """Small CTR-GCN forwards run faster on one thread, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- brute force


def brute_force_shapley(value, players: list[int]) -> dict[int, float]:
    """Average marginal contribution over all orders of ``players``; ``value(frozenset)``."""
    totals = dict.fromkeys(players, 0.0)
    orders = list(permutations(players))
    for order in orders:
        coalition: frozenset[int] = frozenset()
        for player in order:
            totals[player] += value(coalition | {player}) - value(coalition)
            coalition = coalition | {player}
    return {player: total / len(orders) for player, total in totals.items()}


def game_from_table(values: torch.Tensor):
    """``value(set of parts)`` for a ``(2**P,)`` bitmask-indexed table."""
    return lambda parts: float(values[sum(1 << p for p in parts)])


def random_game(seed: int) -> torch.Tensor:
    return torch.rand(NUM_COALITIONS, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --------------------------------------------------------------------------- exact values


def test_three_player_game_by_hand():
    # v(0)=1, v(1)=2, v(2)=0, v(01)=4, v(02)=1, v(12)=3, v(012)=6, indexed by bitmask.
    values = torch.tensor([0.0, 1.0, 2.0, 4.0, 0.0, 1.0, 3.0, 6.0], dtype=torch.float64)
    # phi_0 = 1/3*1 + 1/6*(4-2) + 1/6*(1-0) + 1/3*(6-3) = 11/6, and similarly for the others.
    expected = torch.tensor([11 / 6, 20 / 6, 5 / 6], dtype=torch.float64)
    torch.testing.assert_close(shapley_values(values), expected, **EXACT)


def test_five_player_values_equal_the_permutation_formula():
    values = random_game(1)
    brute = brute_force_shapley(game_from_table(values), list(range(NUM_PARTS)))
    expected = torch.tensor([brute[p] for p in range(NUM_PARTS)], dtype=torch.float64)
    torch.testing.assert_close(shapley_values(values), expected, **EXACT)


def test_efficiency_on_a_batch_of_games():
    values = torch.rand(4, 3, NUM_COALITIONS, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    phi = shapley_values(values)
    assert phi.shape == (4, 3, NUM_PARTS)
    torch.testing.assert_close(phi.sum(-1), values[..., -1] - values[..., 0], **EXACT)


def test_symmetric_players_get_equal_values():
    # v depends on parts 1 and 3 only through how many of them are present.
    rng = torch.Generator().manual_seed(3)
    by_rest_and_count = torch.rand(NUM_COALITIONS, 3, generator=rng, dtype=torch.float64)
    masks = torch.arange(NUM_COALITIONS)
    rest = masks & ~0b01010
    count = ((masks >> 1) & 1) + ((masks >> 3) & 1)
    phi = shapley_values(by_rest_and_count[rest, count])
    assert float(phi[1]) == pytest.approx(float(phi[3]), abs=1e-12)
    assert abs(phi[1] - phi[0]) > 1e-3  # the game is not symmetric in every player


def test_null_player_gets_zero():
    values = random_game(4)
    without_two = torch.arange(NUM_COALITIONS) & ~0b00100
    phi = shapley_values(values[without_two])
    assert phi[2] == pytest.approx(0.0, abs=1e-12)
    assert phi.abs().sum() > 1e-3


def test_rejects_a_length_that_is_not_a_power_of_two():
    with pytest.raises(ValueError, match="2\\*\\*P"):
        shapley_values(torch.zeros(6))


def test_combination_values_equal_the_merged_game_by_brute_force():
    values = random_game(5)
    game = game_from_table(values)
    combos = PartCombinations.from_layout("ntu25")
    phi = combination_shapley_values(values, combos)
    assert phi.shape == (len(combos),)
    for index, combo in enumerate(combos.combinations):
        merged = -1  # a new player standing for all parts of the combination
        others = [p for p in range(NUM_PARTS) if p not in combo]

        def reduced(players: frozenset[int], combo=combo, merged=merged) -> float:
            parts = {p for p in players if p != merged} | (set(combo) if merged in players else set())
            return game(parts)

        expected = brute_force_shapley(reduced, [merged, *others])[merged]
        assert float(phi[index]) == pytest.approx(expected, abs=1e-12), combos.names[index]


def test_singleton_combinations_equal_part_values():
    values = torch.rand(3, NUM_COALITIONS, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    singletons = [(p,) for p in range(NUM_PARTS)]
    torch.testing.assert_close(combination_shapley_values(values, singletons), shapley_values(values), **EXACT)


def test_merged_player_weights_are_shapley_weights():
    weights = merged_player_weights(3, (0b001,))
    # player 0 of 3: +w on coalitions containing it, -w on those without; w = 1/3, 1/6, 1/6, 1/3.
    expected = torch.tensor([-1 / 3, 1 / 3, -1 / 6, 1 / 6, -1 / 6, 1 / 6, -1 / 3, 1 / 3], dtype=torch.float64)
    torch.testing.assert_close(weights[:, 0], expected, **EXACT)
    weights[0, 0] = 100.0  # the returned matrix is a copy; the cache stays intact
    assert merged_player_weights(3, (0b001,))[0, 0] == pytest.approx(-1 / 3)


# --------------------------------------------------------------------------- coalition worths on a model


def small_model(num_classes: int = 3, num_persons: int = 1) -> CTRGCN:
    torch.manual_seed(0)
    return CTRGCN(num_classes, "ntu25", num_persons=num_persons, base_channels=8, num_blocks=3).eval()


def small_batch(num_samples: int, frames: int = 8, num_persons: int = 1, num_classes: int = 3):
    rng = torch.Generator().manual_seed(7)
    x = torch.randn(num_samples, 3, frames, 25, num_persons, generator=rng)
    y = torch.randint(num_classes, (num_samples,), generator=rng)
    return x, y


def true_class_probability(model, x, y):
    with torch.no_grad():
        return torch.softmax(model(x), dim=1)[torch.arange(len(y)), y]


def test_coalition_joint_masks_follow_the_parts():
    layout = get_layout("ntu25")
    masks = coalition_joint_masks(layout)
    assert masks.shape == (NUM_COALITIONS, 25)
    assert not masks[0].any() and masks[-1].all()
    assert masks[0b00010].nonzero().flatten().tolist() == sorted(layout.parts["left_arm"])
    both_legs = sorted(layout.parts["left_leg"] + layout.parts["right_leg"])
    assert masks[0b11000].nonzero().flatten().tolist() == both_legs


def test_coalition_values_match_direct_evaluation_and_restore_train_mode():
    model = small_model().train()
    x, y = small_batch(3, frames=4)
    baseline = torch.randn(3, 4, 25, 1, generator=torch.Generator().manual_seed(8))
    values = coalition_values(model, x, y, baseline, "ntu25", batch_size=7)
    assert model.training
    assert values.shape == (3, NUM_COALITIONS)
    model.eval()
    torch.testing.assert_close(values[:, -1], true_class_probability(model, x, y))
    torch.testing.assert_close(values[:, 0], true_class_probability(model, baseline.expand_as(x), y))
    arms = 0b00110
    keep = coalition_joint_masks("ntu25")[arms].expand(3, -1)
    torch.testing.assert_close(values[:, arms], true_class_probability(model, mask_parts(x, keep, baseline), y))
    torch.testing.assert_close(values, coalition_values(model, x, y, baseline, "ntu25", batch_size=200))


def test_mask_parts_replaces_only_absent_joints_in_all_frames():
    x, _ = small_batch(2)
    baseline = torch.full((3, 8, 25, 1), 9.0)
    keep = torch.zeros(2, 25, dtype=torch.bool)
    keep[0, :5] = True
    out = mask_parts(x, keep, baseline)
    torch.testing.assert_close(out[0, :, :, :5], x[0, :, :, :5])
    assert (out[0, :, :, 5:] == 9.0).all() and (out[1] == 9.0).all()


# --------------------------------------------------------------------------- Monte-Carlo estimator


DRAWS_PER_SAMPLE = 600
DRAWS_PER_CALL = 300
STANDARD_ERRORS = 4.5  # a correct estimator fails with probability < 1e-5 per sample
FIXED_COMBINATIONS = (0, 12, 19)  # torso+left_arm, torso+left_arm+right_leg, arms+right_leg ...
MC_FRAMES = 4
INPUT_SCALE = 0.5  # keeps the random network's probabilities away from saturation


def test_monte_carlo_estimate_is_unbiased_for_a_fixed_combination():
    """Mean of DRAWS_PER_SAMPLE unclipped estimates vs the exact phi(S) / joints(S).

    Tolerance: STANDARD_ERRORS standard errors of the mean (sample std / sqrt(draws)) plus
    1e-7 for float32 rounding of the probabilities.  For these samples the standard deviation of
    one estimate is about 1e-3, so the tolerance is about 2e-4 on values of order 1e-3..1e-2.
    """
    model = small_model()
    combos = PartCombinations.from_layout("ntu25")
    x, y = small_batch(len(FIXED_COMBINATIONS), frames=MC_FRAMES)
    x = INPUT_SCALE * x
    baseline = mean_sequence(x)
    combination = torch.tensor(FIXED_COMBINATIONS)
    exact = combination_shapley_values(coalition_values(model, x, y, baseline, "ntu25").double(), combos)
    exact = exact[torch.arange(len(combination)), combination] / combos.joint_counts[combination]

    generator = torch.Generator().manual_seed(9)
    pieces = []
    for _ in range(DRAWS_PER_SAMPLE // DRAWS_PER_CALL):
        estimate = estimate_combination_shapley(
            model,
            x.repeat(DRAWS_PER_CALL, 1, 1, 1, 1),
            y.repeat(DRAWS_PER_CALL),
            baseline,
            combos,
            combination=combination.repeat(DRAWS_PER_CALL),
            generator=generator,
            clip=False,
        )
        assert (estimate.combinations == combination.repeat(DRAWS_PER_CALL)).all()
        assert (estimate.coalitions & combos.bitmasks[estimate.combinations] == 0).all()
        pieces.append(estimate.values.double().reshape(DRAWS_PER_CALL, len(combination)))
    draws = torch.cat(pieces)
    standard_error = draws.std(dim=0) / DRAWS_PER_SAMPLE**0.5
    assert (standard_error > 1e-6).all(), "degenerate game: the test could not fail"
    error = (draws.mean(dim=0) - exact).abs()
    assert (error <= STANDARD_ERRORS * standard_error + 1e-7).all(), (error, standard_error)


class ConstantModel(nn.Module):
    """Uniform logits: a model whose cost does not matter when only the sampler is tested."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.num_classes)


def test_coalition_sizes_are_uniform():
    """|T| is uniform over 0..|U minus S|: the Shapley weights, not uniform subsets."""
    combos = PartCombinations.from_layout("ntu25")
    draws = 4000
    x, y = small_batch(1, frames=4)
    estimate = estimate_combination_shapley(
        ConstantModel(),
        x.expand(draws, -1, -1, -1, -1),
        y.expand(draws),
        torch.zeros(3, 4, 25, 1),
        combos,
        combination=torch.zeros(draws, dtype=torch.int64),  # 2 parts, so |T| in 0..3
        generator=torch.Generator().manual_seed(10),
    )
    sizes = torch.tensor([int(c).bit_count() for c in estimate.coalitions])
    frequency = torch.bincount(sizes, minlength=4).double() / draws
    # uniform: 1/4 each (binomial std 0.007); uniform subsets would give 1/8, 3/8, 3/8, 1/8
    torch.testing.assert_close(frequency, torch.full((4,), 0.25, dtype=torch.float64), rtol=0, atol=0.035)
    # within a size, every subset of the 3 outside parts is equally likely (1/3 each for |T| = 1)
    singles = estimate.coalitions[sizes == 1]
    shares = torch.stack([(singles == 1 << part).double().mean() for part in (2, 3, 4)])
    torch.testing.assert_close(shares, torch.full((3,), 1 / 3, dtype=torch.float64), rtol=0, atol=0.06)


CLIP_SAMPLES = 6


def test_clip_naive_and_mode_restore():
    model = small_model().train()
    model.data_bn.eval()  # a frozen submodule must stay in eval mode
    combos = PartCombinations.from_layout("ntu25")
    x, y = small_batch(CLIP_SAMPLES, frames=4)
    baseline = mean_sequence(x)
    kwargs = {"combination": torch.arange(CLIP_SAMPLES) * 3}

    def run(**options):
        return estimate_combination_shapley(
            model, x, y, baseline, combos, generator=torch.Generator().manual_seed(11), **kwargs, **options
        )

    raw, clipped = run(clip=False), run(clip=True)
    assert model.training and model.l1.training and not model.data_bn.training
    assert (raw.coalitions == clipped.coalitions).all()
    torch.testing.assert_close(clipped.values, raw.values.clamp(min=0))
    assert (raw.values < 0).any(), "no negative contribution: clipping would be untested"

    naive = run(naive=True, clip=False)
    assert (naive.coalitions == 0).all()
    values = coalition_values(model, x, y, baseline, "ntu25")
    combination = kwargs["combination"]
    present = values[torch.arange(CLIP_SAMPLES), combos.bitmasks[combination]]
    expected = (present - values[:, 0]) / combos.joint_counts[combination]
    torch.testing.assert_close(naive.values, expected)


def test_random_combinations_are_drawn_per_sample_and_seeded():
    model = small_model()
    combos = PartCombinations.from_layout("ntu25")
    x, y = small_batch(24, frames=4)
    baseline = torch.zeros(3, 4, 25, 1)

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        return estimate_combination_shapley(model, x, y, baseline, combos, generator=generator)

    first, again, other = run(12), run(12), run(13)
    assert len(first.combinations.unique()) > 8
    assert torch.equal(first.combinations, again.combinations) and torch.equal(first.values, again.values)
    assert not torch.equal(first.combinations, other.combinations)


def test_mean_sequence_of_a_tensor_and_of_batches_agree():
    x, y = small_batch(10)
    loader = [(x[:4], y[:4]), (x[4:], y[4:])]
    torch.testing.assert_close(mean_sequence(loader), x.mean(dim=0))
    torch.testing.assert_close(mean_sequence(x), x.mean(dim=0))
    with pytest.raises(ValueError):
        mean_sequence([])


def test_weights_in_the_merged_game_use_the_reduced_player_count():
    # phi(S) for |S| = 3 of 5 parts is a game of 3 players: weights 1/3, 1/6, 1/6, 1/3.
    combo = 0b00111
    weights = merged_player_weights(NUM_PARTS, (combo,))[:, 0]
    for coalition in range(NUM_COALITIONS):
        if coalition & combo:
            continue
        size = coalition.bit_count()
        expected = factorial(size) * factorial(2 - size) / factorial(3)
        assert weights[coalition | combo] == pytest.approx(expected)
        assert weights[coalition] == pytest.approx(-expected)


def test_masked_rows_go_through_one_forward_of_fixed_size_empty_coalitions_included():
    from shapmix.mixing.shapley import _masked_probabilities

    model = small_model()
    x, y = small_batch(4)
    baseline = torch.randn(3, 8, 25, 1, generator=torch.Generator().manual_seed(3))
    keep = torch.rand(8, 25, generator=torch.Generator().manual_seed(4)) > 0.5
    keep[[1, 2, 6]] = False  # empty coalitions of samples 1, 2 and 2
    calls = []
    hook = model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        probabilities = _masked_probabilities(model, x, y, keep, baseline)
    finally:
        hook.remove()
    assert calls == [8]  # every row, however many are empty: the size never depends on the draws
    rows = torch.arange(8) % 4
    expected = true_class_probability(model, mask_parts(x[rows], keep, baseline), y[rows])
    torch.testing.assert_close(probabilities, expected, rtol=1e-5, atol=1e-6)
    # an empty row is the baseline itself
    on_baseline = true_class_probability(model, baseline[None].expand(3, -1, -1, -1, -1), y[[1, 2, 2]])
    torch.testing.assert_close(probabilities[[1, 2, 6]], on_baseline, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- estimation budget


def test_class_balanced_subset_spreads_the_estimates_over_the_classes():
    counts = torch.tensor([400, 100, 25, 5])
    # Batches drawn in proportion to the counts, as a shuffled long-tailed epoch delivers them.
    generator = torch.Generator().manual_seed(0)
    batches = torch.multinomial(counts.double(), 32 * 3000, replacement=True, generator=generator)
    chosen_labels = []
    for batch in batches.reshape(3000, 32):
        chosen = class_balanced_subset(batch, counts, 8, generator)
        assert chosen.tolist() == sorted(set(chosen.tolist())) and len(chosen) == 8
        chosen_labels.append(batch[chosen])
    per_class = torch.bincount(torch.cat(chosen_labels), minlength=4).double()
    seen = torch.bincount(batches, minlength=4).double()
    # A uniform subset would estimate a quarter of every class's samples (head : tail = 80 : 1);
    # here nearly every tail sample is estimated and the head gets what is left.
    assert (per_class / seen)[3] > 0.9
    assert (per_class / seen)[0] < 0.15
    assert per_class.max() / per_class.min() < 15
    labels = batches[:10]
    assert class_balanced_subset(labels, counts, 10).tolist() == list(range(10))
    assert class_balanced_subset(labels, counts, 50).tolist() == list(range(10))
    with pytest.raises(ValueError, match="budget"):
        class_balanced_subset(labels, counts, 0)
    same = [class_balanced_subset(labels, counts, 4, torch.Generator().manual_seed(3)).tolist() for _ in range(2)]
    assert same[0] == same[1]


def test_least_estimated_combinations_fill_each_row_evenly():
    counts = torch.tensor([[3, 0, 2, 0], [1, 1, 1, 0]])
    labels = torch.tensor([0, 1, 0, 1, 0])
    picks = least_estimated_combinations(counts, labels, torch.Generator().manual_seed(0))
    assert set(picks[labels == 0].tolist()) <= {1, 3}
    assert picks[labels == 1].tolist() == [3, 3]
    # Ties are broken at random: over many draws both least-updated cells of class 0 are used.
    draws = least_estimated_combinations(counts, torch.zeros(400, dtype=torch.long), torch.Generator().manual_seed(1))
    assert set(draws.tolist()) == {1, 3} and 150 < (draws == 1).sum() < 250


def test_clipped_combination_values_sum_the_clipped_marginals_by_hand():
    values = random_game(21) - 0.5  # marginal contributions of both signs
    combos = PartCombinations.from_layout("ntu25")
    clipped = clipped_combination_shapley_values(values, combos)
    for index, combo in enumerate(combos.combinations):
        group = sum(1 << p for p in combo)
        players = NUM_PARTS - len(combo) + 1
        expected = 0.0
        for coalition in range(NUM_COALITIONS):
            if coalition & group:
                continue
            size = coalition.bit_count()
            weight = factorial(size) * factorial(players - 1 - size) / factorial(players)
            expected += weight * max(float(values[coalition | group] - values[coalition]), 0.0)
        assert float(clipped[index]) == pytest.approx(expected, abs=1e-12), combos.names[index]
    unclipped = combination_shapley_values(values, combos)
    assert (clipped >= unclipped - 1e-12).all() and (clipped > unclipped + 1e-3).any()
    # a game whose worth only grows as parts join has no negative contribution to clip
    monotone = torch.tensor([float(b.bit_count()) ** 2 for b in range(NUM_COALITIONS)], dtype=torch.float64)
    torch.testing.assert_close(
        clipped_combination_shapley_values(monotone, combos), combination_shapley_values(monotone, combos), **EXACT
    )


def test_exact_rows_are_the_exact_values_of_each_sample():
    model = small_model().train()
    combos = PartCombinations.from_layout("ntu25")
    x, y = small_batch(3, frames=4)
    baseline = mean_sequence(x)
    worths = coalition_values(model, x, y, baseline, "ntu25").to(torch.float64)
    joints = combos.joint_counts.to(torch.float64)
    rows = exact_combination_rows(model, x, y, baseline, combos, clip=False)
    assert rows.shape == (3, len(combos)) and model.training
    torch.testing.assert_close(rows.double(), combination_shapley_values(worths, combos) / joints, rtol=1e-5, atol=1e-7)
    clipped = exact_combination_rows(model, x, y, baseline, combos, clip=True)
    torch.testing.assert_close(
        clipped.double(), clipped_combination_shapley_values(worths, combos) / joints, rtol=1e-5, atol=1e-7
    )


def test_least_estimated_classes_pick_one_sample_of_each_least_updated_class():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3])
    row_counts = torch.tensor([5, 0, 3, 1])
    picked_samples: set[int] = set()
    for seed in range(20):
        chosen, picked = least_estimated_classes(row_counts, labels, 3, torch.Generator().manual_seed(seed))
        assert labels[chosen].tolist() == [1, 3, 2]  # fewest row updates first, class 0 left out
        assert picked.tolist() == [True] * 3
        picked_samples.update(chosen.tolist())
    assert picked_samples == {3, 4, 5, 6, 7}  # the sample within a class is drawn at random
    # at most one per class present: the size is fixed (min(number, N)), the extra rows unpicked
    everything, picked = least_estimated_classes(row_counts, labels, 10, torch.Generator().manual_seed(0))
    assert len(everything) == 8 and picked.tolist() == [True] * 4 + [False] * 4
    assert sorted(labels[everything[picked]].tolist()) == [0, 1, 2, 3]
    assert sorted(everything.tolist()) == list(range(8))
    tied = {int(labels[least_estimated_classes(torch.zeros(4), labels, 1, torch.Generator().manual_seed(s))[0]])
            for s in range(40)}
    assert tied == {0, 1, 2, 3}  # ties between classes broken at random
