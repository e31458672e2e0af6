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
``views``           run seed    ``10``    ``(epoch, rank)``: the rotations of the extra views of
                                          PaCo and BCL (:mod:`shapmix.methods.contrastive`)
``brl``             run seed    ``20``    ``(epoch, rank)``: BRL's scale, flip, reversal and
                                          partial-mix draws (checkpointed within an epoch)
``fsa``             run seed    ``21``    ``(rank,)``: FSA's choice of head samples and fusion
                                          masks, checkpointed
==================  ==========  ========  ====================================================

The numbers are those the project has always used: changing one changes every result.  The
model's initial weights come from ``torch.manual_seed(train.seed)`` (torch's global generator),
not from a stream.

A component that owns a checkpointed stream (a mixer, Shap-Mix's estimator) holds it as a
:class:`DeviceGenerator`: the stream's :class:`torch.Generator` is made on the device of the
first batch it draws for, so a training step on a GPU draws its random numbers there, without a
round trip to the host.  On a CPU it is exactly a CPU generator seeded with the stream's seed.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "AUGMENT",
    "BRL",
    "DeviceGenerator",
    "ESTIMATOR",
    "FSA",
    "GLMC",
    "GLMC_EPOCH",
    "VIEWS",
    "MIXER",
    "RUN_SEED",
    "SAMPLER_EPOCH",
    "SHUFFLE",
    "STREAMS",
    "SeedStream",
    "draw_device",
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
VIEWS = SeedStream("views", RUN_SEED, (10,))
BRL = SeedStream("brl", RUN_SEED, (20,))
FSA = SeedStream("fsa", RUN_SEED, (21,))

STREAMS: tuple[SeedStream, ...] = (
    SHUFFLE, AUGMENT, MIXER, ESTIMATOR, GLMC, SAMPLER_EPOCH, GLMC_EPOCH, VIEWS, BRL, FSA,
)
"""Every stream of a run."""


UNSTARTED = "unstarted"
""":meth:`DeviceGenerator.state_dict`'s device of a stream that has not drawn yet."""

_SEED_BYTES = 8
"""Bytes of a state's digest that seed a stream moved to another kind of device."""


def draw_device(generator: torch.Generator | None, data_device: torch.device) -> torch.device:
    """Where a draw from ``generator`` happens: on the generator's own device, or, for torch's
    default generator (``None``), on the data's device."""
    return data_device if generator is None else generator.device


def _same_device(generator: torch.Generator, device: torch.device) -> bool:
    """Whether ``generator`` draws on ``device`` (``cuda`` without an index means any GPU)."""
    return generator.device.type == device.type and (device.index is None or generator.device.index == device.index)


class DeviceGenerator:
    """A seeded random stream whose :class:`torch.Generator` lives where the data is.

    Made from a ``seed``, the stream creates its generator on the device :meth:`on` is first
    asked for (the device of the first batch it draws for) and seeds it there, so every draw of a
    step happens on the batch's device; on the CPU it draws exactly what
    ``torch.Generator().manual_seed(seed)`` draws.  Made from a ``generator``, it always draws
    from that generator, wherever it lives (its owner moves the draws to the data).

    A checkpointed state (:meth:`state_dict`) is a CPU ``uint8`` tensor and the kind of device
    it belongs to; :meth:`load_state_dict` restores it onto a generator of that kind when the
    stream next draws, so a state saved on a GPU and loaded from a checkpoint read on the CPU
    continues on the GPU.  A CPU and a GPU generator cannot continue each other's stream: if the
    stream is asked for another kind of device than the one its state belongs to, it warns and
    continues, reproducibly, from a seed derived from that state.

    Args:
        seed: seed of the stream's generator.
        generator: a generator to draw from instead (exclusive with ``seed``).
        name: what the stream is called in warnings (e.g. ``"the ST-Mix mixer"``).
    """

    def __init__(self, seed: int | None = None, generator: torch.Generator | None = None, name: str = "a random stream") -> None:
        if (seed is None) == (generator is None):
            raise ValueError("a DeviceGenerator needs exactly one of seed and generator")
        self.name = name
        self._fixed = generator is not None
        self._generator = generator
        self._seed = seed
        self._pending: tuple[str, torch.Tensor] | None = None

    def on(self, device: torch.device | str) -> torch.Generator:
        """The stream's generator for draws on ``device`` (made there at the first call)."""
        device = torch.device(device)
        if self._generator is not None and (self._fixed or _same_device(self._generator, device)):
            return self._generator
        if self._generator is not None:
            # The stream moves to another device: continue from a seed its own state gives.
            self._warn_move(self._generator.device.type, device.type)
            seed = self._seed_from(self._generator.get_state())
            self._pending = None
        elif self._pending is not None:
            kind, state = self._pending
            if kind == device.type:
                self._generator = torch.Generator(device=device)
                self._generator.set_state(state)
                self._pending = None
                return self._generator
            self._warn_move(kind, device.type)
            seed = self._seed_from(state)
            self._pending = None
        else:
            seed = self._seed
        self._generator = torch.Generator(device=device).manual_seed(seed)
        return self._generator

    @property
    def current(self) -> torch.Generator:
        """The generator the stream draws from now: the last one made, else one on the CPU."""
        if self._generator is not None:
            return self._generator
        return self.on(self._pending[0] if self._pending is not None else "cpu")

    def state_dict(self) -> dict[str, Any]:
        """``{"state": CPU uint8 tensor, "device": "cpu" | "cuda" | ... | "unstarted"}``; an
        unstarted stream's state is that of a CPU generator given its seed, from which the seed
        is read back."""
        if self._generator is not None:
            return {"state": self._generator.get_state(), "device": self._generator.device.type}
        if self._pending is not None:
            kind, state = self._pending
            return {"state": state.clone(), "device": kind}
        return {"state": torch.Generator().manual_seed(self._seed).get_state(), "device": UNSTARTED}

    def load_state_dict(self, state: dict[str, Any] | torch.Tensor) -> None:
        """Restore :meth:`state_dict` (a bare tensor, as older checkpoints hold, is a CPU state)."""
        if isinstance(state, torch.Tensor):
            state = {"state": state, "device": "cpu"}
        tensor, kind = state["state"], str(state["device"])
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.uint8:
            found = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"{self.name}: a generator state must be a uint8 tensor, got {found}")
        tensor = tensor.detach().to("cpu").clone()
        if kind == UNSTARTED:
            if self._fixed:
                raise ValueError(f"{self.name} draws from a given generator and cannot restart from a seed")
            self._seed = torch.Generator().set_state(tensor).initial_seed()
            self._generator, self._pending = None, None
            return
        if self._fixed:
            if self._generator.device.type != kind:
                raise ValueError(
                    f"{self.name}: a state saved on {kind} cannot be restored onto its given generator "
                    f"on {self._generator.device}"
                )
            self._generator.set_state(tensor)
            return
        self._generator, self._pending = None, (kind, tensor)

    def _seed_from(self, state: torch.Tensor) -> int:
        digest = hashlib.sha256(state.to("cpu").numpy().tobytes()).digest()
        return int.from_bytes(digest[:_SEED_BYTES], "little")

    def _warn_move(self, source: str, target: str) -> None:
        warnings.warn(
            f"{self.name}: its random stream was on {source} and now draws on {target}; a {source} "
            f"generator's state cannot continue on {target}, so it continues from a seed derived "
            f"from that state (reproducible, but not the stream an uninterrupted {target} run draws)",
            stacklevel=3,
        )
