"""FSA (Chu et al., ECCV 2020): tail features synthesised from class-specific and class-generic parts."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_resumed_run_matches, make_tiny_dataset, tiny_config
from test_method_frhead import cuda_sync_errors
from test_no_host_sync import cuda_device, no_host_reads  # noqa: F401  (a fixture)

from shapmix.config import MethodConfig
from shapmix.engine.checkpoint import load_checkpoint
from shapmix.engine.trainer import train
from shapmix.losses import CrossEntropy
from shapmix.methods import TrainingNetwork, build_method
from shapmix.methods.fsa import activation_maps, fuse_features, split_features
from shapmix.models import build_model
from shapmix.skeleton.layouts import get_layout

LAYOUT = get_layout("ntu25")
COUNTS = np.array([40, 20, 10, 5, 3, 2])  # with fsa_tail_max_samples=10: classes 2..5 are the tail
TAIL_MAX = 10
WINDOW = 16


def fsa_setup(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model("ctrgcn", len(COUNTS), LAYOUT, 2, base_channels=8, num_blocks=3)
    config = MethodConfig(name="fsa", fsa_tail_max_samples=TAIL_MAX)
    method = build_method(config, len(COUNTS), COUNTS, LAYOUT, seed, model=model)
    return model, method, TrainingNetwork(model, method.heads)


def batch(n: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, WINDOW, LAYOUT.num_joints, 2, generator=generator)
    return x, torch.arange(n) % len(COUNTS)


def test_activation_maps_are_the_normalised_cam_of_the_own_class():
    model, _, _ = fsa_setup()
    model.eval()
    x, y = batch()
    features = model.forward_features(x).detach()
    maps = activation_maps(model, features, y)
    N, M = len(y), x.shape[-1]
    cam = F.relu(torch.einsum("nmctv,nc->nmtv", features.reshape(N, M, *features.shape[1:]), model.fc.weight[y]))
    low, high = cam.amin(dim=(1, 2, 3), keepdim=True), cam.amax(dim=(1, 2, 3), keepdim=True)
    # a map that is zero everywhere (no positive evidence) stays zero: all of it class-generic
    torch.testing.assert_close(maps, (cam - low) / (high - low).clamp_min(1e-12), atol=1e-5, rtol=1e-5)
    assert maps.shape == (N, M, *features.shape[2:]) and maps.amax() == 1 and maps.amin() == 0


def test_synthesised_features_hold_the_tail_specific_and_the_head_generic_parts():
    # two samples, one person, 2 channels, 1 frame, 3 joints
    features = torch.tensor([[[[1.0, 2.0, 3.0]], [[4.0, 5.0, 6.0]]], [[[7.0, 8.0, 9.0]], [[10.0, 11.0, 12.0]]]])
    maps = torch.tensor([[[[0.9, 0.5, 0.1]]], [[[0.1, 0.95, 0.15]]]])  # (N, M, T', V)
    specific, generic = split_features(features, maps, specific_threshold=0.8, generic_threshold=0.2)
    # sample 0: joint 0 is specific, joint 2 generic; sample 1: joint 1 specific, joints 0 and 2 generic
    assert specific[0, 0].tolist() == [[[1.0, 0.0, 0.0]], [[4.0, 0.0, 0.0]]]
    assert generic[1, 0].tolist() == [[[7.0, 0.0, 9.0]], [[10.0, 0.0, 12.0]]]
    donors = torch.tensor([[1], [0]])  # sample 0 (tail) fuses with sample 1 (head)
    take_specific = torch.tensor([[[[[True, False, False]]]], [[[[False, False, False]]]]])
    fused = fuse_features(specific, generic, donors, take_specific)
    assert fused.shape == (2, 1, 1, 2, 1, 3)
    # the tail's specific joint 0, then the head's generic joints (joint 1 is specific to the head: zero)
    assert fused[0, 0, 0].tolist() == [[[1.0, 0.0, 9.0]], [[4.0, 0.0, 12.0]]]


def test_donors_are_head_samples_of_the_confusing_classes():
    _, method, _ = fsa_setup()
    labels = torch.tensor([5, 0, 1, 4])  # tail 5, head 0 and 1, tail 4
    # class 5's samples were scored as class 1, never as class 0
    method.score_sums[5] = torch.tensor([0.0, 0.6, 0.0, 0.0, 0.0, 0.4])
    method.score_counts[5] = 1
    tail = method.tail
    donors, valid = method.draw_donors(labels, tail, torch.Generator().manual_seed(0))
    assert donors.shape == valid.shape == (4, 3)
    assert donors[0, 0] == 2 and valid[0].tolist() == [True, False, False]  # the class-1 sample only
    assert not valid[1:3].any()  # head samples get nothing synthesised
    assert set(donors[3][valid[3]].tolist()) == {1, 2}  # class 4 unseen: uniform over both head samples


def run_steps(device: torch.device, guard) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three FSA steps on ``device``, the last two under ``guard``; the first step's loss,
    logits and the plain cross entropy of those logits."""
    model, method, network = fsa_setup()
    model.to(device)
    x, y = (tensor.to(device) for tensor in batch())
    optimiser = torch.optim.SGD(network.parameters(), lr=0.01)
    criterion = CrossEntropy()

    def step():
        loss, logits = method.training_loss(network, x, y, criterion, 0)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return loss, logits

    loss, logits = step()
    plain = criterion(logits, y)
    assert method.score_counts.sum() == len(y)
    with guard():
        step()
        step()
    return loss, logits, plain


def test_steps_train_on_synthesised_rows_and_read_nothing_back_to_the_host(monkeypatch):
    loss, logits, plain = run_steps(torch.device("cpu"), lambda: no_host_reads(monkeypatch))
    assert torch.isfinite(loss) and logits.shape == (12, len(COUNTS))
    assert not torch.isclose(loss, plain)  # the synthesised tail rows count too


def test_gpu_steps_never_synchronise(cuda_device):  # noqa: F811  (the imported fixture)
    run_steps(cuda_device, lambda: cuda_sync_errors(cuda_device))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


def test_second_stage_changes_only_the_classifier_and_resumes_exactly(tiny_data, tmp_path):
    # tiny train counts 12, 8, 5, 3: classes 2 and 3 are the tail
    first = tmp_path / "stage1"
    train(tiny_config(tiny_data, epochs=1, extra=["data.window=16", "log.plots=false"]), first)
    config = tiny_config(tiny_data, epochs=2, extra=[
        "data.window=16", "log.plots=false", "method.name=fsa", "method.fsa_tail_max_samples=6",
        "finetune.kind=classifier", f"finetune.checkpoint={first / 'last.pt'}",
    ])
    _, expected, interrupted = assert_resumed_run_matches(config, tmp_path / "stage2")
    start = load_checkpoint(first / "last.pt")["model"]
    changed = {key for key in start if not torch.equal(start[key], expected["model"][key])}
    assert changed == {"fc.weight", "fc.bias"}
    assert set(expected["method"]) == {"score_sums", "score_counts", "stream"}
    assert expected["method"]["score_counts"].sum() > interrupted["method"]["score_counts"].sum()
