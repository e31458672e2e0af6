"""The run's streams of randomness (shapmix.seeds): fixed numbers, no two streams alike."""

from __future__ import annotations

import numpy as np

from shapmix.seeds import RUN_SEED, SAMPLER_EPOCH, SHUFFLE, STREAMS

# The numbers every result so far was computed with: changing one changes every run.
KNOWN_WORDS = {
    "shuffle": (1,), "augment": (2,), "mixer": (7,), "estimator": (8,), "glmc": (9,), "views": (10,), "brl": (20,),
    "fsa": (21,),
}


def _first_word(entropy: list[int]) -> int:
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def test_streams_of_the_run_seed_keep_their_numbers_and_differ():
    run_streams = {stream.name: stream.words for stream in STREAMS if stream.parent == RUN_SEED}
    assert run_streams == KNOWN_WORDS
    names = [stream.name for stream in STREAMS]
    assert len(set(names)) == len(names)
    # a per-epoch stream hangs off another stream, one child per parent
    children = [stream.parent for stream in STREAMS if stream.parent != RUN_SEED]
    assert set(children) <= set(names) and len(set(children)) == len(children)
    assert len({stream.derive(3, 0, 0) for stream in STREAMS if stream.parent == RUN_SEED}) == len(run_streams)


def test_derive_is_the_seed_sequence_of_parent_words_and_position():
    assert SHUFFLE.derive(5, 3, 0) == _first_word([5, 1, 3, 0])
    assert SAMPLER_EPOCH.derive(11, 2) == _first_word([11, 2])
