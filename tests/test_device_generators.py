"""Random streams that live on the batch's device (shapmix.seeds.DeviceGenerator and its users).

Every random draw of a training step comes from a generator passed in or owned by the component;
these tests check, on the CPU, that the draws come from that generator (same state, same
output; another seed, another output), that each component's generator state round-trips
through ``state_dict`` exactly, and that the CPU streams are bit-identical to those of the code
before the draws moved to the device (the pinned values below were computed with it).
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import torch
from torch import nn

from shapmix.config import MethodConfig
from shapmix.data.transforms import CropResize, RandomRotation, build_pipeline
from shapmix.methods import build_method
from shapmix.mixing import (
    CutMix,
    Mixup,
    PartCombinations,
    Remix,
    SaliencyTable,
    ShapMix,
    STMix,
    class_balanced_subset,
    estimate_combination_shapley,
    least_estimated_classes,
    least_estimated_combinations,
)
from shapmix.mixing.shapmix import draw_categorical
from shapmix.seeds import DeviceGenerator
from shapmix.skeleton.layouts import get_layout

LAYOUT = "ntu25"
COUNTS = [50, 20, 8, 3, 1]
COMBINATIONS = PartCombinations.from_layout(LAYOUT)


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()[:16]


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(8, 3, 32, 25, 2, generator=torch.Generator().manual_seed(123))
    return x, torch.tensor([0, 1, 2, 3, 0, 0, 1, 4])


def _table() -> SaliencyTable:
    table = SaliencyTable.from_combinations(len(COUNTS), COMBINATIONS)
    table.values = torch.rand(len(COUNTS), len(COMBINATIONS), generator=torch.Generator().manual_seed(3)) / 8
    return table


def _saved(state: dict) -> dict:
    """``state`` after a round trip through ``torch.save`` / ``torch.load(weights_only=True)``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


MIXERS = {
    "mixup": lambda seed: Mixup(len(COUNTS), alpha=0.3, seed=seed),
    "cutmix": lambda seed: CutMix(len(COUNTS), seed=seed),
    "remix": lambda seed: Remix(len(COUNTS), COUNTS, seed=seed),
    "stmix": lambda seed: STMix(LAYOUT, len(COUNTS), seed=seed),
    "stmix_per_batch": lambda seed: STMix(LAYOUT, len(COUNTS), seed=seed, draw="per_batch", partner="cycle"),
    "shapmix": lambda seed: ShapMix(LAYOUT, COUNTS, _table(), tau=0.02, seed=seed),
    "shapmix_random": lambda seed: ShapMix(LAYOUT, COUNTS, _table(), guidance="random", seed=seed),
}


def _mix(mixer, x, y) -> tuple[torch.Tensor, ...]:
    x_mixed, targets, info = mixer.mix_with_info(x, y)
    return x_mixed, targets, info.partner, info.lam, info.combination, info.window_start, info.donor_length


def _same(first: tuple[torch.Tensor, ...], second: tuple[torch.Tensor, ...]) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first, second))


# --------------------------------------------------------------------------- DeviceGenerator


def test_a_seeded_stream_on_the_cpu_is_the_cpu_generator_of_its_seed():
    stream = DeviceGenerator(11)
    assert torch.equal(torch.rand(5, generator=stream.on("cpu")), torch.rand(5, generator=torch.Generator().manual_seed(11)))
    assert stream.on(torch.device("cpu")) is stream.on("cpu") is stream.current


def test_stream_state_round_trips_exactly_started_or_not():
    stream = DeviceGenerator(3)
    torch.rand(7, generator=stream.on("cpu"))
    state = _saved(stream.state_dict())
    assert state["device"] == "cpu" and state["state"].dtype == torch.uint8
    expected = torch.rand(4, generator=stream.on("cpu"))
    resumed = DeviceGenerator(99)
    resumed.load_state_dict(state)
    assert torch.equal(torch.rand(4, generator=resumed.on("cpu")), expected)
    # a stream that has not drawn yet keeps its seed, so it starts on whatever device it is used
    unstarted = _saved(DeviceGenerator(5).state_dict())
    assert unstarted["device"] == "unstarted"
    restarted = DeviceGenerator(6)
    restarted.load_state_dict(unstarted)
    assert torch.equal(torch.rand(3, generator=restarted.on("cpu")), torch.rand(3, generator=torch.Generator().manual_seed(5)))
    # checkpoints written before the device was recorded hold the bare CPU state
    legacy = DeviceGenerator(7)
    legacy.load_state_dict(state["state"])
    assert torch.equal(torch.rand(4, generator=legacy.on("cpu")), expected)


def test_a_gpu_state_read_on_a_cpu_machine_survives_a_save_and_moves_reproducibly():
    gpu_state = {"state": torch.arange(16, dtype=torch.uint8), "device": "cuda"}  # Philox: seed, offset
    stream = DeviceGenerator(0)
    stream.load_state_dict(gpu_state)
    saved = stream.state_dict()  # not used yet: the GPU state is kept as it was
    assert saved["device"] == "cuda" and torch.equal(saved["state"], gpu_state["state"])
    draws = []
    for _ in range(2):
        moved = DeviceGenerator(0, name="the test stream")
        moved.load_state_dict(saved)
        with pytest.warns(UserWarning, match="the test stream.*cuda.*cpu"):
            draws.append(torch.rand(4, generator=moved.on("cpu")))
    assert torch.equal(draws[0], draws[1])
    with pytest.raises(ValueError, match="uint8"):
        stream.load_state_dict({"state": torch.zeros(4), "device": "cpu"})


def test_a_given_generator_is_used_wherever_it_lives():
    generator = torch.Generator().manual_seed(4)
    stream = DeviceGenerator(generator=generator)
    assert stream.on("cpu") is generator and stream.on(torch.device("cuda")) is generator
    with pytest.raises(ValueError, match="cannot be restored"):
        stream.load_state_dict({"state": torch.zeros(16, dtype=torch.uint8), "device": "cuda"})
    with pytest.raises(ValueError, match="exactly one"):
        DeviceGenerator()


# --------------------------------------------------------------------------- mixers


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_mixer_draws_come_from_its_generator_and_its_state_round_trips(name):
    x, y = _batch()
    first, again, other = MIXERS[name](1), MIXERS[name](1), MIXERS[name](2)
    output = _mix(first, x, y)
    assert _same(output, _mix(again, x, y))  # same seed, same draws
    assert not torch.equal(output[2], _mix(other, x, y)[2]) or not torch.equal(output[3], _mix(other, x, y)[3])
    state = _saved(first.state_dict())
    assert state["generator_device"] == "cpu"
    expected = _mix(first, x, y)
    resumed = MIXERS[name](3)
    resumed.load_state_dict(state)
    assert _same(_mix(resumed, x, y), expected)
    assert torch.equal(resumed.state_dict()["generator"], first.state_dict()["generator"])


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_a_mixer_restored_before_its_first_batch_starts_from_the_saved_seed(name):
    x, y = _batch()
    resumed = MIXERS[name](8)
    resumed.load_state_dict(_saved(MIXERS[name](7).state_dict()))
    assert _same(_mix(resumed, x, y), _mix(MIXERS[name](7), x, y))


def test_a_mixer_given_a_generator_draws_from_it():
    x, y = _batch()
    generator = torch.Generator().manual_seed(1)
    mixer = STMix(LAYOUT, len(COUNTS), generator=generator)
    assert mixer.generator is generator
    before = generator.get_state()
    assert _same(_mix(mixer, x, y), _mix(STMix(LAYOUT, len(COUNTS), seed=1), x, y))
    assert not torch.equal(generator.get_state(), before)


def test_draw_categorical_is_multinomial_on_the_cpu_draw_for_draw():
    probabilities = torch.softmax(torch.randn(50, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3, 1)
    probabilities[:5] = torch.nn.functional.one_hot(torch.arange(5) * 3, 20).double()  # certain rows
    ours, theirs = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    for _ in range(3):
        drawn = draw_categorical(probabilities, ours)
        assert torch.equal(drawn, torch.multinomial(probabilities, 1, generator=theirs).squeeze(1))
        assert drawn[:5].tolist() == [0, 3, 6, 9, 12]
    assert torch.equal(ours.get_state(), theirs.get_state())


# --------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("transform", [CropResize(16, (0.5, 1.0), 8), RandomRotation(0.3)], ids=["crop", "rotation"])
def test_random_transforms_draw_from_the_given_generator(transform):
    x, _ = _batch()
    lengths = torch.tensor([32, 20, 17, 30, 25, 32, 9, 31])
    outputs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed + 100)  # torch's global generator must not matter
        outputs.append(transform(x, lengths, torch.Generator().manual_seed(seed))[0])
    assert torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], outputs[2])


# --------------------------------------------------------------------------- the Shap-Mix estimator


def test_estimator_draws_come_from_the_given_generator():
    x, y = _batch()
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 4, 0, 0, 1])
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 25 * 2, len(COUNTS)))
    row_counts = torch.tensor([5, 0, 3, 1, 0])
    cell_counts = torch.randint(0, 4, (len(COUNTS), len(COMBINATIONS)), generator=torch.Generator().manual_seed(1))

    def draw(seed: int) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed + 100)  # torch's global generator must not matter
        estimate = estimate_combination_shapley(model, x, y, x.mean(0), COMBINATIONS, generator=generator)
        return (
            class_balanced_subset(labels, torch.tensor(COUNTS), 5, generator),
            least_estimated_classes(row_counts, labels, 3, generator)[0],
            least_estimated_combinations(cell_counts, labels, generator),
            estimate.combinations,
            estimate.coalitions,
            generator.get_state(),
        )

    assert _same(draw(1), draw(1))
    assert not any(torch.equal(a, b) for a, b in zip(draw(1)[3:5], draw(2)[3:5]))


def _shapmix_method(seed: int, estimator: str):
    counts = np.array(COUNTS)
    options = dict(name="shapmix", warmup_epochs=0, interval=1, shapley_estimator=estimator, estimate_fraction=0.5)
    return build_method(MethodConfig(**options), len(COUNTS), counts, get_layout(LAYOUT), seed, baseline=torch.zeros(3, 32, 25, 2))


@pytest.mark.parametrize("estimator", ["sampled", "exact"])
def test_shapmix_method_state_round_trips_the_estimator_and_mixer_streams(estimator):
    x, y = _batch()
    x = torch.cat([x, x.flip(0)])
    y = torch.cat([y, y.flip(0)])
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 25 * 2, len(COUNTS)))

    def steps(method, first: int, number: int) -> None:
        for step in range(first, first + number):
            method.before_step(model, x, y, epoch=0, step=step)
            method.mix(x, y, epoch=0)

    method = _shapmix_method(1, estimator)
    steps(method, 0, 2)
    state = _saved(method.state_dict())
    assert state["estimator_generator_device"] == "cpu" and state["mixer"]["generator_device"] == "cpu"
    steps(method, 2, 3)
    resumed = _shapmix_method(2, estimator)
    resumed.load_state_dict(state)
    steps(resumed, 2, 3)
    assert torch.equal(resumed.table.values, method.table.values) and method.table.counts.sum() > 0
    assert torch.equal(resumed.table.counts, method.table.counts)
    for key in ("estimator_generator", "row_credit"):
        assert torch.equal(torch.as_tensor(resumed.state_dict()[key]), torch.as_tensor(method.state_dict()[key]))
    # a state written before the generators' devices were recorded still loads
    legacy = {key: value for key, value in state.items() if key != "estimator_generator_device"}
    legacy["mixer"] = {"generator": state["mixer"]["generator"]}
    _shapmix_method(3, estimator).load_state_dict(legacy)


# --------------------------------------------------------------------------- unchanged CPU streams


def test_cpu_streams_are_those_of_the_cpu_generators_before_the_move():
    """Values computed with the code that drew everything from CPU generators: moving the draws
    to the batch's device must not change one number of a CPU run."""
    x, y = _batch()
    _, _, info = STMix(LAYOUT, len(COUNTS), seed=0).mix_with_info(x, y)
    assert info.partner.tolist() == [5, 6, 7, 0, 1, 2, 3, 4]
    assert info.combination.tolist() == [-1, -1, -1, -1, -1, -1, 15, -1]
    assert float(info.lam[0]).hex() == "0x1.99b18c4527274p-2"
    x_mixed, targets, info = ShapMix(LAYOUT, COUNTS, _table(), tau=0.02, seed=2).mix_with_info(x, y)
    assert info.combination.tolist() == [-1, 17, 10, 8, 13, 0, 8, 15]
    assert (info.window_start.tolist(), info.donor_length.tolist()) == ([0, 12, 4, 12, 4, 8, 8, 16], [0, 20, 32, 24, 20, 28, 24, 24])
    assert (_digest(x_mixed), _digest(targets)) == ("ecb0b4a41971f4c3", "0be432d54c6eb442")
    _, _, info = ShapMix(LAYOUT, COUNTS, _table(), guidance="random", seed=2).mix_with_info(x, y)
    assert info.combination.tolist() == [-1, 9, 8, 8, 6, 14, 8, 5]
    x_mixed, _, info = CutMix(len(COUNTS), seed=5).mix_with_info(x, y)
    assert info.window_start.tolist() == [6, 3, 0, 0, 1, 4, 1, 0] and _digest(x_mixed) == "2a5c2528facb46f6"
    pipeline = build_pipeline(LAYOUT, train=True, window=16, min_crop_frames=8)
    lengths = torch.tensor([32, 20, 17, 30, 25, 32, 9, 31])
    draws = torch.Generator().manual_seed(7)
    augmented = pipeline(x, lengths, draws)[0].double()
    # The draws pin the stream bit for bit; the output is compared to a tolerance, as its last
    # bits depend on the processor's kernels (rotations are matrix products).
    assert _digest(draws.get_state()) == "e08106ea629b562f"
    assert (float(augmented.abs().sum()), float(augmented.sum())) == pytest.approx((18743.7446, 1175.2203), abs=1e-2)

    generator = torch.Generator().manual_seed(8)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 4, 0, 0, 1])
    assert class_balanced_subset(labels, torch.tensor(COUNTS), 5, generator).tolist() == [4, 5, 6, 8, 11]
    assert least_estimated_classes(torch.tensor([5, 0, 3, 1, 0]), labels, 3, generator)[0].tolist() == [8, 3, 7]
    cell_counts = torch.randint(0, 4, (len(COUNTS), len(COMBINATIONS)), generator=generator)
    combination = least_estimated_combinations(cell_counts, labels, generator)
    assert combination.tolist() == [15, 5, 15, 11, 0, 19, 2, 11, 19, 5, 5, 0]
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 25 * 2, len(COUNTS)))
    estimate = estimate_combination_shapley(model, x, y, x.mean(0), COMBINATIONS, generator=generator)
    assert estimate.combinations.tolist() == [2, 3, 10, 15, 12, 18, 17, 13]
    assert estimate.coalitions.tolist() == [2, 12, 16, 0, 4, 1, 9, 16]
