"""Synchronised batch norm under DDP: 2 processes x B samples train like one process with 2B."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from shapmix.distributed import DistributedContext, ProcessGroupBatchNorm, synchronize_batch_norm
from shapmix.models import build_model

WORLD_SIZE = 2
PER_RANK = 3
TOLERANCE = 1e-5


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BranchyNet(nn.Module):
    """BatchNorm1d and 2d layers on parallel branches with a residual, like a GCN block.

    No max-pooling: a pooling window whose values are ties at float precision may route its
    gradient to another element when the normalisation is computed in another order, which is
    legitimate but would make the comparison below a matter of luck."""

    def __init__(self) -> None:
        super().__init__()
        self.data_bn = nn.BatchNorm1d(3 * 5)
        self.left = nn.Sequential(nn.Conv2d(3, 4, (3, 1), padding=(1, 0)), nn.BatchNorm2d(4), nn.ReLU())
        self.right = nn.Sequential(nn.Conv2d(3, 4, 1, stride=(2, 1)), nn.BatchNorm2d(4))
        self.down = nn.Sequential(nn.Conv2d(4, 4, (3, 1), stride=(2, 1), padding=(1, 0)), nn.BatchNorm2d(4))
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v = x.shape
        x = self.data_bn(x.permute(0, 1, 3, 2).reshape(n, c * v, t)).reshape(n, c, v, t).permute(0, 1, 3, 2)
        y = self.down(self.left(x)) + self.right(x)
        return self.fc(torch.relu(y).mean(dim=(2, 3)))


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return BranchyNet()


def fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(WORLD_SIZE * PER_RANK, 3, 8, 5, generator=generator) * 2 + 1
    y = torch.randint(4, (WORLD_SIZE * PER_RANK,), generator=generator)
    return x, y


def step_result(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter's gradient and the batch-norm running statistics after a backward pass."""
    result = {f"grad.{name}": p.grad.detach().clone() for name, p in model.named_parameters()}
    result.update({f"buffer.{name}": b.detach().clone() for name, b in model.named_buffers() if "running" in name})
    return result


def training_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    model.train()
    nn.functional.cross_entropy(model(x), y).backward()
    return step_result(model)


def _step_on_rank(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    torch.set_num_threads(1)
    model = synchronize_batch_norm(tiny_model(), torch.device("cpu"))
    ddp = nn.parallel.DistributedDataParallel(model)
    x, y = fixed_batch()
    mine = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
    ddp.train()
    nn.functional.cross_entropy(ddp(x[mine]), y[mine]).backward()  # DDP averages the gradients
    if rank == 0:
        torch.save(step_result(model), out)
    DistributedContext(rank=rank, world_size=WORLD_SIZE, owns_group=True).close()


@pytest.mark.slow
def test_two_processes_with_synchronised_batch_norm_match_one_process_with_the_whole_batch(tmp_path):
    reference = training_step(tiny_model(), *fixed_batch())
    out = tmp_path / "rank0.pt"
    mp.spawn(_step_on_rank, args=(free_port(), str(out)), nprocs=WORLD_SIZE, join=True)
    distributed = torch.load(out, weights_only=True)
    assert distributed.keys() == reference.keys()
    for key, expected in reference.items():
        scale = expected.abs().max().clamp(min=1.0)
        assert (distributed[key] - expected).abs().max() <= TOLERANCE * scale, key


def ctrgcn() -> nn.Module:
    torch.manual_seed(0)
    return build_model("ctrgcn", num_classes=4, layout="ntu25", num_persons=2, base_channels=8, num_blocks=2)


def test_conversion_keeps_parameters_buffers_and_function():
    model, plain = ctrgcn(), ctrgcn()
    parameters = dict(model.named_parameters())
    x = torch.randn(4, 3, 8, 25, 2, generator=torch.Generator().manual_seed(2))
    model.eval()
    before = model(x)
    converted = synchronize_batch_norm(model, torch.device("cpu"))
    assert converted is model
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(norms) > 10 and all(isinstance(m, ProcessGroupBatchNorm) for m in norms)
    assert all(p is parameters[name] for name, p in model.named_parameters())  # optimiser-safe
    assert model.state_dict().keys() == plain.state_dict().keys()  # checkpoints stay compatible
    assert torch.equal(model(x), before)  # eval: running statistics, unchanged
    model.train()
    plain.train()  # without a process group: ordinary batch norm, running statistics too
    assert torch.equal(model(x), plain(x))
    for (name, mine), theirs in zip(model.named_buffers(), plain.buffers()):
        assert torch.equal(mine, theirs), name
