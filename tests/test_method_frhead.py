"""FR Head (Zhou et al., CVPR 2023): refinement losses in training only, inference unchanged."""

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_resumed_run_matches, make_tiny_dataset, tiny_config
from test_no_host_sync import cuda_device, no_host_reads  # noqa: F401  (a fixture)

from shapmix.config import MethodConfig
from shapmix.data.transforms import build_pipeline
from shapmix.losses import BalancedSoftmax, CrossEntropy
from shapmix.methods import TrainingNetwork, build_method
from shapmix.methods.frhead import refinement_loss, tap_blocks
from shapmix.models import build_model
from shapmix.skeleton.layouts import get_layout

LAYOUT = get_layout("ntu25")
COUNTS = np.array([40, 20, 10, 5, 3, 2])
WINDOW = 16
TINY = {"base_channels": 8, "num_blocks": 3}
BACKBONES = ["ctrgcn", "stgcnpp", "agcn", "infogcn", "hdgcn"]


def frhead_setup(
    backbone: str = "ctrgcn", window: int = WINDOW, num_classes: int = len(COUNTS), device: str = "cpu", **model_args
):
    torch.manual_seed(0)
    model = build_model(backbone, num_classes, LAYOUT, 2, **(model_args or TINY)).to(device)
    pipeline = build_pipeline(LAYOUT, train=True, window=window, min_crop_frames=window)
    counts = COUNTS if num_classes == len(COUNTS) else np.full(num_classes, 10)
    method = build_method(MethodConfig(name="frhead"), num_classes, counts, LAYOUT, 0, model=model, train_pipeline=pipeline)
    return model, method, TrainingNetwork(model, method.heads)


def batch(n: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, WINDOW, LAYOUT.num_joints, 2, generator=generator)
    return x, torch.arange(n) % len(COUNTS)


def test_taps_are_the_first_block_of_every_stage_and_the_last_block():
    assert tap_blocks(10, 64) == [0, 4, 7, 9]  # the original's l1, l5, l8, l10
    assert tap_blocks(9, 64) == [0, 3, 6, 8]  # InfoGCN's depth
    assert tap_blocks(3, 8) == [0, 1, 2, 2]


def test_heads_add_the_papers_half_million_parameters_to_ctrgcn_on_ntu60():
    model, method, _ = frhead_setup(window=64, num_classes=60, base_channels=64, num_blocks=10)
    added = sum(p.numel() for p in method.heads.parameters())
    # 4 levels of (spatial 10 x 25 -> 256, temporal 256/T' x T' -> 256) on l1, l5, l8, l10
    assert added == 536_956
    assert math.isclose(sum(p.numel() for p in model.parameters()) / 1e6, 1.45, abs_tol=0.01)


def test_heads_reproduce_the_backbone_logits_and_inference_is_the_bare_backbone():
    model, method, network = frhead_setup()
    x, y = batch()
    model.eval()
    with torch.no_grad():
        logits, embeddings, latent = network(x, with_heads=True)
        assert torch.equal(logits, model(x)) and latent is None
        assert embeddings.shape == (4, 2, len(y), 256)
    model.train()
    optimiser = torch.optim.SGD(network.parameters(), lr=0.1)
    for _ in range(2):
        loss, logits = method.training_loss(network, x, y, CrossEntropy(), 0)
        classification = CrossEntropy()(logits, y)
        assert loss > classification  # the refinement losses are added in training
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    bare = build_model("ctrgcn", len(COUNTS), LAYOUT, 2, **TINY)
    bare.load_state_dict(model.state_dict())  # the checkpointed model holds no head
    for module in (bare, model, network):
        module.eval()
    with torch.no_grad():
        assert torch.equal(network(x), bare(x)) and torch.equal(model(x), bare(x))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_trains_and_every_head_parameter_gets_gradient(backbone):
    _, method, network = frhead_setup(backbone)
    x, y = batch()
    memory = method.heads.memory.clone()
    loss, logits = method.training_loss(network, x, y, BalancedSoftmax(COUNTS), 0)
    loss.backward()
    assert torch.isfinite(loss) and logits.shape == (len(y), len(COUNTS))
    for name, parameter in method.heads.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert not torch.equal(memory, method.heads.memory)


def reference_loss(embeddings, labels, logits, memory, alpha, temperature, momentum):
    """The original RenovateNet V0, one sample and class at a time."""
    n, k = logits.shape
    probs = logits.softmax(1)
    predicted = logits.argmax(1)
    new_memory = memory.clone()
    means = {}
    for name, member in (
        ("tp", lambda i, c: labels[i] == c and predicted[i] == c),
        ("fn", lambda i, c: labels[i] == c and predicted[i] != c),
        ("fp", lambda i, c: predicted[i] == c and labels[i] != c),
    ):
        for c in range(k):
            rows = [embeddings[i] for i in range(n) if member(i, c)]
            means[name, c] = torch.stack(rows).mean(0) if rows else None
    for c in range(k):
        if means["tp", c] is not None:
            new_memory[c] = momentum * memory[c] + (1 - momentum) * means["tp", c]
    total = 0.0
    for i in range(n):
        for kind, sign in (("fn", 1.0), ("fp", -1.0)):
            row = []
            for c in range(k):
                score = F.cosine_similarity(embeddings[i], new_memory[c], dim=0, eps=1e-12)
                mean = means[kind, labels[i].item()]
                if c == labels[i] and mean is not None:
                    score = score + alpha * (1 - probs[i, c]) * (sign * F.cosine_similarity(embeddings[i], mean, dim=0) - 1)
                row.append(score / temperature)
            total = total + F.cross_entropy(torch.stack(row)[None], labels[i : i + 1])
    return total / n, new_memory


def test_refinement_loss_matches_the_original_formulas_sample_by_sample():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 3, 3])
    logits = torch.randn(7, 4, generator=generator, dtype=torch.float64)
    logits[0, 0] = logits[2, 1] = logits[5, 3] = 9.0  # confident samples of classes 0, 1, 3
    logits[1, 2] = logits[6, 1] = logits[4, 0] = 9.0  # false negatives of 0, 3 and 2, false positives of 2, 1, 0
    memory = torch.randn(4, 5, generator=generator, dtype=torch.float64)
    loss, new_memory = refinement_loss(embeddings, labels, logits, memory, 0.125, 0.125, 0.9)
    expected_loss, expected_memory = reference_loss(embeddings, labels, logits, memory, 0.125, 0.125, 0.9)
    torch.testing.assert_close(new_memory, expected_memory)
    torch.testing.assert_close(loss, expected_loss.to(loss.dtype))
    assert torch.equal(new_memory[2], memory[2])  # no confident sample of class 2: unchanged


def test_level_weights_must_match_the_refined_levels():
    torch.manual_seed(0)
    model = build_model("ctrgcn", len(COUNTS), LAYOUT, 2, base_channels=8, num_blocks=2)
    pipeline = build_pipeline(LAYOUT, train=True, window=WINDOW)
    with pytest.raises(ValueError, match="frhead_level_weights has 4 weights.*3 refined levels"):
        build_method(MethodConfig(name="frhead"), len(COUNTS), COUNTS, LAYOUT, 0, model=model, train_pipeline=pipeline)


@contextmanager
def cuda_sync_errors(device: torch.device) -> Iterator[None]:
    """Inside the block every synchronising CUDA call raises."""
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def run_steps(device: torch.device, guard) -> None:
    """Three FR Head steps on ``device``, the last two under ``guard``."""
    _, method, network = frhead_setup(device=device)
    x, y = (tensor.to(device) for tensor in batch())
    optimiser = torch.optim.SGD(network.parameters(), lr=0.01)
    criterion = BalancedSoftmax(COUNTS).to(device)

    def step():
        loss, _ = method.training_loss(network, x, y, criterion, 0)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    step()
    with guard():
        step()
        step()


def test_steps_read_nothing_back_to_the_host(monkeypatch):
    run_steps(torch.device("cpu"), lambda: no_host_reads(monkeypatch))


def test_gpu_steps_never_synchronise(cuda_device):  # noqa: F811  (the imported fixture)
    run_steps(cuda_device, lambda: cuda_sync_errors(cuda_device))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


def test_frhead_run_resumes_exactly_and_tests_the_bare_backbone(tiny_data, tmp_path):
    from shapmix.engine.evaluate import evaluate_checkpoint

    config = tiny_config(tiny_data, epochs=2, extra=["method.name=frhead", "data.window=16", "log.plots=false"])
    result, expected, interrupted = assert_resumed_run_matches(config, tmp_path)
    assert set(expected["method"]) == {"heads"}
    assert not torch.equal(interrupted["method"]["heads"]["memory"], expected["method"]["heads"]["memory"])
    assert not any(key.startswith(("levels", "heads")) for key in expected["model"])
    # the test metrics are those of the checkpointed backbone alone
    metrics = evaluate_checkpoint(tmp_path / "full" / "last.pt")
    assert metrics.top1 == pytest.approx(result["test"]["top1"])


DDP_WORLD_SIZE = 2


def _refine_on_rank(rank: int, port: int, out: str) -> None:
    """Worker: each rank refines its half of one batch; every rank's prototypes and loss are saved."""
    import torch.distributed as dist

    from shapmix.distributed import DistributedContext

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=DDP_WORLD_SIZE)
    context = DistributedContext(rank=rank, world_size=DDP_WORLD_SIZE, owns_group=True)
    embeddings, labels, logits, memory = ddp_batch()
    half = len(labels) // DDP_WORLD_SIZE
    mine = slice(rank * half, (rank + 1) * half)
    loss, new_memory = refinement_loss(embeddings[mine], labels[mine], logits[mine], memory, 0.125, 0.125, 0.9, context)
    gathered = context.all_gather_object((loss.detach(), new_memory.detach()))
    if context.is_main:
        torch.save(gathered, out)
    context.close()


def ddp_batch():
    generator = torch.Generator().manual_seed(3)
    embeddings = torch.randn(16, 8, generator=generator, dtype=torch.float64)
    labels = torch.randint(3, (16,), generator=generator)
    logits = torch.randn(16, 3, generator=generator, dtype=torch.float64)
    memory = torch.randn(3, 8, generator=generator, dtype=torch.float64)
    return embeddings, labels, logits, memory


def test_ranks_keep_the_prototypes_of_the_global_batch(tmp_path):
    import torch.multiprocessing as mp
    from test_saliency_ddp import free_port

    out = tmp_path / "ranks.pt"
    mp.spawn(_refine_on_rank, args=(free_port(), str(out)), nprocs=DDP_WORLD_SIZE, join=True)
    (loss0, memory0), (loss1, memory1) = torch.load(out, weights_only=True)
    embeddings, labels, logits, memory = ddp_batch()
    loss, expected = refinement_loss(embeddings, labels, logits, memory, 0.125, 0.125, 0.9)
    assert torch.equal(memory0, memory1)  # the same on every rank
    torch.testing.assert_close(memory0, expected)  # ... and that of one process with the whole batch
    torch.testing.assert_close((loss0 + loss1) / 2, loss)  # the mean of equal halves' losses
    half_alone, _ = refinement_loss(embeddings[:8], labels[:8], logits[:8], memory, 0.125, 0.125, 0.9)
    assert not torch.isclose(half_alone, loss0)  # a rank alone would see other statistics
