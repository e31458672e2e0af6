"""The named streams of randomness of a training run, in one table (a leaf module).

Every random draw of a run comes from a generator seeded by :meth:`SeedStream.derive`: the
first 32-bit word of ``numpy.random.SeedSequence([parent_seed, *stream.words, *position])``.
Streams derived from the run seed (``train.seed``) carry distinct ``words``, so no two of them
repeat each other's draws; a *per-epoch* stream is the child of another stream's seed (its
``parent``) and adds only the position (the epoch, and the rank where ranks must differ).
A resumed run re-derives every per-epoch generator from ``(seed, epoch, rank)``, which is what
makes resuming exact.

==================  ==========  ========  ====================================================
stream              parent      words     position, and what draws from it
==================  ==========  ========  ====================================================
``shuffle``         run seed    ``1``     ``(epoch, 0)``: the training order (a shuffle, or,
                                          at epoch 0, the seed of a re-balancing or DDP sampler)
``augment``         run seed    ``2``     ``(epoch, rank)``: crop and rotation of the batches
``mixer``           run seed    ``7``     none: the batch mixer's draws (Mixup, CutMix, ST-Mix,
                                          Shap-Mix, Remix), checkpointed
``estimator``       run seed    ``8``     none: Shap-Mix's choice of estimated samples and
                                          coalitions, checkpointed
``glmc``            run seed    ``9``     none: the seed of GLMC's re-sampled batches
``sampler_epoch``   ``shuffle`` none      ``(epoch,)``: a re-balancing sampler's epoch sequence
``glmc_epoch``      ``glmc``    none      ``(epoch, rank)``: GLMC's re-sampled batch and mixes
==================  ==========  ========  ====================================================

The numbers are those the project has always used: changing one changes every result.  The
model's initial weights come from ``torch.manual_seed(train.seed)`` (torch's global generator),
not from a stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "AUGMENT",
    "ESTIMATOR",
    "GLMC",
    "GLMC_EPOCH",
    "MIXER",
    "RUN_SEED",
    "SAMPLER_EPOCH",
    "SHUFFLE",
    "STREAMS",
    "SeedStream",
]

RUN_SEED = "run seed"
"""The :attr:`SeedStream.parent` of the streams derived from ``train.seed`` itself."""


@dataclass(frozen=True)
class SeedStream:
    """One named stream of randomness.

    Attributes:
        name: what it is called in the table above.
        parent: :data:`RUN_SEED`, or the name of the stream whose seed it is derived from.
        words: entropy words that set it apart from the other children of the same parent
            (empty for the single per-epoch child of a stream).
    """

    name: str
    parent: str
    words: tuple[int, ...]

    def derive(self, parent_seed: int, *position: int) -> int:
        """The seed of this stream at ``position`` (e.g. ``epoch, rank``), a 32-bit integer."""
        return int(np.random.SeedSequence([parent_seed, *self.words, *position]).generate_state(1)[0])


SHUFFLE = SeedStream("shuffle", RUN_SEED, (1,))
AUGMENT = SeedStream("augment", RUN_SEED, (2,))
MIXER = SeedStream("mixer", RUN_SEED, (7,))
ESTIMATOR = SeedStream("estimator", RUN_SEED, (8,))
GLMC = SeedStream("glmc", RUN_SEED, (9,))
SAMPLER_EPOCH = SeedStream("sampler_epoch", SHUFFLE.name, ())
GLMC_EPOCH = SeedStream("glmc_epoch", GLMC.name, ())

STREAMS: tuple[SeedStream, ...] = (SHUFFLE, AUGMENT, MIXER, ESTIMATOR, GLMC, SAMPLER_EPOCH, GLMC_EPOCH)
"""Every stream of a run."""
