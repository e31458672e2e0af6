"""Re-balancing samplers: ROS balances classes exactly, class-balanced sampling is ~uniform over
classes, and under DDP the shards are disjoint, equal and cover the global sequence."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from shapmix.config import ConfigError
from shapmix.data.samplers import (
    RebalancingSampler,
    ResumableSampler,
    ShuffleSampler,
    class_balanced_sequence,
    epoch_length,
    over_sampled_sequence,
)

from helpers import make_tiny_dataset, tiny_config

# A long tail with an empty class (3), which both samplers must skip.
COUNTS = (50, 20, 7, 0, 2)
LABELS = np.repeat(np.arange(len(COUNTS)), COUNTS)
PRESENT = [c for c, n in enumerate(COUNTS) if n]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


def test_ros_tops_every_class_up_to_the_largest_and_keeps_every_sample():
    sequence = over_sampled_sequence(LABELS, torch.Generator().manual_seed(0))
    assert len(sequence) == epoch_length("ros", LABELS) == len(PRESENT) * max(COUNTS)
    per_class = np.bincount(LABELS[sequence.numpy()], minlength=len(COUNTS))
    assert per_class.tolist() == [max(COUNTS) if n else 0 for n in COUNTS]
    assert set(sequence.tolist()) == set(range(len(LABELS)))  # over-sampling never drops a sample


def test_ros_duplicates_are_drawn_uniformly_within_a_class():
    # class 4 has 2 samples and gets 48 extra draws per epoch; over 200 epochs each member should
    # get about half of them (binomial, sd ~ 49): a sampler always taking the first would fail
    extra_draws = np.zeros(2)
    for epoch in range(200):
        sequence = over_sampled_sequence(LABELS, torch.Generator().manual_seed(epoch)).numpy()
        members = sequence[LABELS[sequence] == 4]
        extra_draws += np.bincount(members - np.flatnonzero(LABELS == 4)[0], minlength=2) - 1
    assert abs(extra_draws[0] - extra_draws[1]) < 6 * np.sqrt(extra_draws.sum())


def test_class_balanced_sampling_draws_classes_uniformly():
    draws = 40_000
    sequence = class_balanced_sequence(LABELS, draws, torch.Generator().manual_seed(1))
    frequencies = np.bincount(LABELS[sequence.numpy()], minlength=len(COUNTS)) / draws
    expected = 1 / len(PRESENT)
    # each frequency is a binomial proportion with sd sqrt(p (1 - p) / n) ~ 0.0022: allow 5 sd
    bound = 5 * np.sqrt(expected * (1 - expected) / draws)
    assert frequencies[3] == 0
    np.testing.assert_allclose(frequencies[PRESENT], expected, atol=bound)
    # within a class, samples are uniform: class 0's 50 members each get ~1/50 of its draws
    class0 = sequence.numpy()[LABELS[sequence.numpy()] == 0]
    member_share = np.bincount(class0, minlength=50) / len(class0)
    assert member_share.min() > 0.5 / 50 and member_share.max() < 1.5 / 50


def test_same_seed_and_epoch_give_the_same_order_and_epochs_differ():
    for kind in ("ros", "class_balanced"):
        first, second = RebalancingSampler(kind, LABELS, seed=5), RebalancingSampler(kind, LABELS, seed=5)
        first.set_epoch(3)
        second.set_epoch(3)
        assert list(first) == list(second)
        second.set_epoch(4)
        assert list(first) != list(second)
        assert list(RebalancingSampler(kind, LABELS, seed=6)) != list(RebalancingSampler(kind, LABELS, seed=5))


@pytest.mark.parametrize("kind", ["ros", "class_balanced"])
@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_shards_are_disjoint_equal_and_cover_the_global_sequence(kind, world_size):
    shards = []
    for rank in range(world_size):
        sampler = RebalancingSampler(kind, LABELS, seed=11, rank=rank, world_size=world_size)
        sampler.set_epoch(2)
        shards.append(list(sampler))
        assert len(shards[-1]) == len(sampler) == epoch_length(kind, LABELS) // world_size
    reference = RebalancingSampler(kind, LABELS, seed=11)
    reference.set_epoch(2)
    kept = reference.global_sequence()[: len(shards[0]) * world_size]
    # positions are disjoint and cover the kept sequence: interleaving the shards rebuilds it
    interleaved = torch.tensor(shards).T.flatten()
    assert torch.equal(interleaved, kept)


def test_bad_sampler_arguments_are_refused():
    with pytest.raises(ValueError, match="re-balancing sampler"):
        RebalancingSampler("random", LABELS, seed=0)
    with pytest.raises(ValueError, match="rank"):
        RebalancingSampler("ros", LABELS, seed=0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="class ids"):
        over_sampled_sequence([[0, 1]], torch.Generator())


def test_config_names_the_allowed_samplers(tiny_data):
    assert tiny_config(tiny_data).data.sampler == "random"
    with pytest.raises(ConfigError, match="sampler"):
        tiny_config(tiny_data, extra=["data.sampler=oversample"])


def test_ros_run_has_the_longer_epoch(tiny_data, tmp_path):
    from shapmix.engine.trainer import Trainer

    trainer = Trainer(tiny_config(tiny_data, extra=["data.sampler=ros"]), tmp_path / "ros")
    try:
        # tiny train split: counts (12, 8, 5, 3) -> 4 classes x 12 = 48 samples, 6 batches of 8
        assert trainer.steps_per_epoch == 6
        trainer.train_sampler.set_epoch(0)
        seen = np.concatenate([batch.label.numpy() for batch in trainer.train_loader])
        assert np.bincount(seen).tolist() == [12, 12, 12, 12]
    finally:
        trainer.close()


def test_shuffle_sampler_gives_the_seeded_random_sampler_order_of_each_epoch():
    from torch.utils.data import RandomSampler

    sampler = ShuffleSampler(10, epoch_seed=lambda epoch: 100 + epoch)
    for epoch in (0, 3):
        sampler.set_epoch(epoch)
        expected = list(RandomSampler(range(10), generator=torch.Generator().manual_seed(100 + epoch)))
        assert list(sampler) == expected
        assert list(sampler) == expected  # iterating again repeats the epoch
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(list(sampler)) == list(range(10))


@pytest.mark.parametrize("kind", ["shuffle", "ros"])
def test_resumable_sampler_continues_an_epoch_where_it_stopped(kind):
    inner = ShuffleSampler(12, epoch_seed=lambda epoch: epoch) if kind == "shuffle" else RebalancingSampler("ros", LABELS, seed=5)
    sampler = ResumableSampler(inner)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler.set_epoch(2, start=5)
    assert list(sampler) == whole[5:]
    assert len(sampler) == len(whole) - 5
    sampler.set_epoch(2, start=len(whole))
    assert list(sampler) == [] and len(sampler) == 0
    with pytest.raises(ValueError, match="negative"):
        sampler.set_epoch(2, start=-1)
