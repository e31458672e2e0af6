"""Process-group setup for ``torchrun`` (DDP) and single-process runs alike.

``torchrun --nproc_per_node N -m shapmix train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init_distributed` then joins the group with NCCL on GPUs and gloo on the
CPU.  Without those variables everything degrades to a single process with no-op collectives.

:func:`synchronize_batch_norm` makes batch norm normalise over the global batch under DDP
(``train.sync_batchnorm``): on CUDA with PyTorch's :class:`torch.nn.SyncBatchNorm`; on the other
devices, where PyTorch's refuses to run (gloo on the CPU), with :class:`ProcessGroupBatchNorm`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "DistributedContext",
    "ProcessGroupBatchNorm",
    "init_distributed",
    "resolve_device",
    "synchronize_batch_norm",
]


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this process's GPU if CUDA is available, else the CPU."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {spec!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


@dataclass
class DistributedContext:
    """Rank information and the few collectives the engine needs."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False
    _control_group: Any = field(default=None, repr=False, compare=False)

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (a one-element list without DDP)."""
        if not self.is_distributed:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def any_rank(self, flags: Sequence[bool]) -> list[bool]:
        """Each of ``flags`` made true on every rank where it is true on any rank.

        The reduction runs on the host over gloo (a gloo group is created the first time when the
        default group is NCCL), so agreeing on a decision never waits for the device.  Every rank
        must call it at the same points.
        """
        if not self.is_distributed:
            return list(flags)
        if self._control_group is None and dist.get_backend() != dist.Backend.GLOO:
            self._control_group = dist.new_group(backend=dist.Backend.GLOO)
        votes = torch.tensor([int(flag) for flag in flags], dtype=torch.int32)
        dist.all_reduce(votes, op=dist.ReduceOp.MAX, group=self._control_group)
        return [bool(vote) for vote in votes.tolist()]

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks in place and return it."""
        if self.is_distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def close(self, failed: bool = False) -> None:
        """Leave the process group this context created (a no-op for a borrowed group).

        After a normal run every rank first waits at a barrier, so that no rank closes its
        connections while another is still using them: a gloo peer whose socket closes in the
        middle of its work dies with SIGABRT instead of finishing.  After a failure (``failed``)
        the other ranks may never reach that barrier, or may be blocked in a collective that a
        teardown would wait on, so the group is left as it is: this process exits with the
        error and torchrun stops the others.
        """
        if not (self.owns_group and dist.is_initialized()) or failed:
            return
        dist.barrier()
        dist.destroy_process_group()


def init_distributed(device_spec: str = "auto") -> tuple[DistributedContext, torch.device]:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(), resolve_device(device_spec)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_spec, local_rank)
    owns_group = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
        owns_group = True
    return DistributedContext(rank, world_size, local_rank, owns_group), device


# --------------------------------------------------------------------------- synchronised batch norm


class _SumOverRanks(torch.autograd.Function):
    """``all_reduce(SUM)`` that autograd differentiates: the gradient of a sum over ranks is the
    sum over ranks of the gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total


class ProcessGroupBatchNorm(_BatchNorm):
    """Batch norm over the batches of all processes, on any device and backend.

    In training mode under an initialised process group of more than one rank, the per-channel
    mean and (biased) variance are those of the union of every rank's batch, computed in two
    differentiable all-reduces (sums and count, then squared deviations from the global mean);
    the running statistics are updated with the unbiased global variance, as
    :class:`torch.nn.SyncBatchNorm`.  Otherwise it is ordinary batch norm.  Works on inputs
    ``(N, C, ...)`` of any rank (BatchNorm1d and 2d layers both convert to it).
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of shape (N, C, ...), got {tuple(input.shape)}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        synchronised = self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not synchronised:
            return super().forward(input)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        shape = [1, channels] + [1] * (input.dim() - 2)
        local_count = input.new_full((1,), input.numel() / channels)
        totals = _SumOverRanks.apply(torch.cat([input.sum(dims), local_count]))
        count = totals[channels]
        mean = totals[:channels] / count
        centred = input - mean.view(shape)
        variance = _SumOverRanks.apply(centred.square().sum(dims)) / count
        output = centred * torch.rsqrt(variance + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), variance.detach(), count.detach())
        return output

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, variance: torch.Tensor, count: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = variance * count / (count - 1).clamp(min=1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


def synchronize_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with every batch-norm layer synchronised across processes (parameters,
    buffers and train/eval flags kept): :class:`torch.nn.SyncBatchNorm` on CUDA,
    :class:`ProcessGroupBatchNorm` elsewhere.  Layers are replaced in place; returns the
    converted module (a new object only when ``module`` itself is a batch-norm layer)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_batch_norm(module)


def _convert_batch_norm(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, ProcessGroupBatchNorm):
        converted = ProcessGroupBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        # The same parameter and buffer objects, so nothing that already holds them goes stale.
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        converted.running_mean = module.running_mean
        converted.running_var = module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, _convert_batch_norm(child))
    return module
