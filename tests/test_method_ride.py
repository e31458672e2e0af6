"""RIDE (Wang et al., ICLR 2021): experts on any backbone, the diversity loss, the router and its
threshold, both stages through the trainer with exact resume, evaluation, export, DDP and the
host-sync guard."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import numpy as np
import pytest
import torch
from helpers import assert_resumed_run_matches, make_tiny_dataset, tiny_overrides
from test_no_host_sync import cuda_device, no_host_reads  # noqa: F401  (cuda_device is a fixture)

from shapmix.bench.presets import PRESETS, preset_config
from shapmix.config import ConfigError, ModelConfig, load_config
from shapmix.engine.builders import build_configured_model
from shapmix.engine.checkpoint import load_checkpoint
from shapmix.engine.evaluate import evaluate_checkpoint
from shapmix.engine.export import export_checkpoint
from shapmix.engine.trainer import train
from shapmix.losses import CrossEntropy, DeferredReweighting, LDAMLoss
from shapmix.methods.ride import RIDEExpertsMethod, RIDERouterMethod, diversity_temperatures, router_targets
from shapmix.models import available_models
from shapmix.models.ride import RIDEModel, shared_block_count, stage_sizes

NUM_CLASSES = 6
CLASS_COUNTS = np.array([40, 20, 10, 5, 3, 2])
TINY = {"base_channels": 8, "num_blocks": 3}
EXPERTS = 3
QUIET = ["log.plots=false", "train.threads=1"]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared CPU two threads per process oversubscribe the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_ride(name: str = "ctrgcn", threshold: float = 0.5, seed: int = 0, **args) -> RIDEModel:
    torch.manual_seed(seed)
    config = ModelConfig(name=name, args={**TINY, **args}, ride_experts=EXPERTS, ride_router_threshold=threshold)
    model = build_configured_model(config, NUM_CLASSES, "ntu25", 2, 3)
    assert isinstance(model, RIDEModel)
    return model


def batch(seed: int = 0, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 3, 8, 25, 2, generator=generator)
    return x, torch.randint(NUM_CLASSES, (size,), generator=generator)


def parameter_ids(module: torch.nn.Module) -> set[int]:
    return {id(parameter) for parameter in module.parameters()}


# --------------------------------------------------------------------------- the model


def test_parameter_sharing_is_as_designed():
    model = tiny_ride()
    # CTR-GCN of 3 blocks: stages [1, 1, 1]; the trunk has 2 of them, every expert the third
    assert stage_sizes(3) == [1, 1, 1] and stage_sizes(10) == [4, 3, 3] and shared_block_count(10, 2) == 7
    assert len(model.trunk.blocks) == 2 and all(len(expert.blocks) == 1 for expert in model.experts)
    trunk, router = parameter_ids(model.trunk), parameter_ids(model.router)
    experts = [parameter_ids(expert) for expert in model.experts]
    groups = [trunk, router, *experts]
    assert sum(map(len, groups)) == len(parameter_ids(model))  # every parameter in exactly one place
    assert all(not a & b for i, a in enumerate(groups) for b in groups[i + 1:])
    # the trunk keeps the stem and no head; each expert its own block and head, no stem
    trunk_keys = set(model.trunk.state_dict())
    assert {"network.data_bn.weight", "blocks.0.gcn1.PA", "blocks.1.gcn1.PA"} <= trunk_keys
    assert not any(key.startswith("network.fc") for key in trunk_keys)
    for expert in model.experts:
        assert {key.split(".")[1] for key in expert.network.state_dict()} == {"weight", "bias"}  # fc only
        assert set(expert.network.state_dict()) == {"fc.weight", "fc.bias"}
    blocks = [expert.blocks[0] for expert in model.experts]
    assert len({id(block) for block in blocks}) == EXPERTS
    # independently initialised experts (each from its own backbone instance)
    first, second = (expert.state_dict() for expert in model.experts[:2])
    assert not torch.equal(first["network.fc.weight"], second["network.fc.weight"])

    x, _ = batch()
    logits = model(x, output="experts")
    shared = model.trunk(x)
    for index, expert in enumerate(model.experts):
        features = expert.blocks[0](shared)
        torch.testing.assert_close(logits[index], expert.network.head(features, 2))
    torch.testing.assert_close(model(x), logits.mean(0))
    # expert 0's loss trains the trunk and expert 0, no other expert
    logits[0].sum().backward()
    assert all(p.grad is not None for p in model.trunk.parameters())
    assert all(p.grad is not None for p in model.experts[0].parameters())
    assert all(p.grad is None or not p.grad.any() for expert in model.experts[1:] for p in expert.parameters())
    assert all(not p.requires_grad for p in model.router.parameters())  # trained in its own stage


@pytest.mark.parametrize("name", available_models())
def test_every_backbone_builds_experts_without_its_stem_and_a_trunk_without_its_head(name):
    model = tiny_ride(name)
    backbone = build_configured_model(ModelConfig(name=name, args=TINY), NUM_CLASSES, "ntu25", 2, 3)
    classifier = getattr(backbone, backbone.classifier_name)
    head_keys = {f"{backbone.classifier_name}.{key}" for key in classifier.state_dict()}
    for expert in model.experts:
        assert head_keys <= set(expert.network.state_dict())
        assert not any(key.startswith("data_bn") for key in expert.network.state_dict())
    assert not head_keys & set(model.trunk.network.state_dict())
    x, _ = batch()
    assert model(x).shape == (8, NUM_CLASSES) and model(x, output="experts").shape == (EXPERTS, 8, NUM_CLASSES)


def test_configs_that_cannot_be_ride_are_clear_errors():
    with pytest.raises(ConfigError, match="method.name=ride trains RIDE's experts: set model.ride_experts"):
        load_config(None, ["method.name=ride"])
    with pytest.raises(ConfigError, match="finetune.kind=ride_router .* set method.name=ride"):
        load_config(None, ["finetune.kind=ride_router", "finetune.checkpoint=x.pt", "model.ride_experts=3"])
    with pytest.raises(ValueError, match="ride_shared_stages=2: a backbone of 2 blocks has stages"):
        tiny_ride(num_blocks=2)


@pytest.mark.parametrize(
    "overrides",
    [
        ["method.name=glmc", "loss.name=ce"],
        ["method.name=bcl", "loss.name=ce"],
        ["method.name=paco", "loss.name=ce"],
        ["method.name=frhead", "loss.name=ce"],
        ["method.name=fsa", "loss.name=ce"],
        ["method.guidance=gradcam", "method.name=shapmix"],
        ["finetune.kind=crt", "finetune.checkpoint=x.pt", "loss.name=ce", "method.name=none"],
    ],
    ids=lambda overrides: overrides[0].split("=")[1],
)
def test_methods_that_need_one_classifier_refuse_ride_experts_before_training(overrides):
    # each of these reads one backbone's features or classifier and failed inside the trainer
    # with a bare TypeError on RIDE's experts; the mixers and losses combine with them
    with pytest.raises(ConfigError, match=rf"{overrides[0]} works on one backbone's features .* set model.ride_experts=1"):
        load_config(None, [*overrides, "model.ride_experts=3"])
    load_config(None, overrides)  # fine on one backbone
    for combinable in (["method.name=shapmix"], ["method.name=skelemix"], ["method.name=brl", "loss.name=ce"]):
        load_config(None, [*combinable, "model.ride_experts=3"])


# --------------------------------------------------------------------------- the losses


DIVERSITY_STEPS = 8
DIVERSITY_LR = 0.1


def disagreement(model: RIDEModel, x: torch.Tensor) -> float:
    """Mean total-variation distance between every expert's class distribution and the ensemble's."""
    model.eval()
    with torch.no_grad():
        probabilities = model(x, output="experts").softmax(-1)
    model.train()
    return float((probabilities - probabilities.mean(0)).abs().sum(-1).mean() / 2)


def trained_disagreement(diversity_factor: float, steps: int = DIVERSITY_STEPS, lr: float = DIVERSITY_LR) -> tuple[float, float]:
    """Experts started from expert 0's weights, each classifier nudged by 1e-3, trained on one
    batch: ``(disagreement before, after)``."""
    model = tiny_ride()
    for expert in model.experts[1:]:
        expert.load_state_dict(model.experts[0].state_dict())
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for expert in model.experts:
            expert.network.fc.weight.add_(1e-3 * torch.randn(expert.network.fc.weight.shape, generator=generator))
    method = RIDEExpertsMethod(CLASS_COUNTS, diversity_factor, temperature=1.0, reweight_factor=0.05)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    x, y = batch(seed=2)
    before = disagreement(model, x)
    for _ in range(steps):
        loss, _ = method.training_loss(model, x, y, CrossEntropy(), epoch=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return before, disagreement(model, x)


def test_the_diversity_loss_drives_identical_experts_apart():
    # a diversity weight larger than the paper's (-0.45) so that the divergence, which grows
    # with the experts' differences, shows within a few steps
    start, without = trained_disagreement(0.0)
    _, diverse = trained_disagreement(-2.0)
    _, attracted = trained_disagreement(2.0)
    assert start < 1e-3
    assert diverse > 5 * without and diverse > 5 * attracted  # measured 7.4x-13x (by thread count)


def test_zero_diversity_trains_every_expert_on_the_ensemble_as_the_original():
    model = tiny_ride()
    x, y = batch()
    loss, logits = RIDEExpertsMethod(CLASS_COUNTS, 0.0, 1.0, 0.05).training_loss(model, x, y, CrossEntropy(), 0)
    ensemble = model(x, output="experts").mean(0)
    torch.testing.assert_close(logits, ensemble)
    torch.testing.assert_close(loss, EXPERTS * torch.nn.functional.cross_entropy(ensemble, y))


def test_the_diversity_temperatures_become_distribution_aware_with_reweighting():
    temperatures = diversity_temperatures(CLASS_COUNTS, 1.0, 0.05)
    frequencies = CLASS_COUNTS / CLASS_COUNTS.sum()
    expected = (6 * frequencies * 0.05 + 0.95) / (6 * frequencies.max() * 0.05 + 0.95)
    np.testing.assert_allclose(temperatures.numpy(), expected, rtol=1e-6)
    assert temperatures[0] == 1.0 and (temperatures.diff() < 0).all()  # head hottest, tail coldest

    model = tiny_ride(classifier="cosine", cosine_scale=30.0)
    x, y = batch()
    method = RIDEExpertsMethod(CLASS_COUNTS, -0.45, 1.0, 0.05)
    reweighted = DeferredReweighting(LDAMLoss(CLASS_COUNTS, 15.0, 1.0), CLASS_COUNTS, start_epoch=1)
    for epoch in (0, 1):
        reweighted.set_epoch(epoch)
        loss, _ = method.training_loss(model, x, y, reweighted, epoch)
        logits = model(x, output="experts")
        temperature = temperatures[None] if epoch == 1 else 1.0
        mean_temperature = float(temperatures.mean()) if epoch == 1 else 1.0
        target = (logits.mean(0) / temperature).softmax(1)
        expected = sum(
            reweighted(z, y) + -0.45 * mean_temperature**2 * torch.nn.functional.kl_div(
                (z / temperature).log_softmax(1), target, reduction="batchmean")
            for z in logits
        )
        torch.testing.assert_close(loss, expected)


# --------------------------------------------------------------------------- the router


def test_router_targets_mark_samples_a_later_expert_gets_right():
    # 4 samples, 3 experts, 2 classes; label 0 everywhere
    votes = torch.tensor([
        [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]],  # expert 0: right on sample 0 only
        [[0.0, 0.1], [3.0, 0.0], [0.0, 1.0], [1.2, 0.0]],  # experts 0..1: right on 0, 1; sample 3 ties 1.2 vs 1.0
        [[0.0, 0.0], [0.0, 0.0], [5.0, 0.0], [0.0, 0.0]],  # experts 0..2: right on 0, 1, 2, 3
    ])
    targets = router_targets(votes, torch.zeros(4, dtype=torch.long))
    assert targets.tolist() == [[False, True, True, True], [False, False, True, False]]


def test_the_routers_expert_count_follows_its_threshold():
    state = tiny_ride().state_dict()
    x, _ = batch(size=32)

    def routed(threshold: float) -> tuple[torch.Tensor, torch.Tensor, RIDEModel]:
        model = tiny_ride(threshold=threshold)
        model.load_state_dict(state)
        model.routed = True
        model.eval()
        with torch.no_grad():
            logits, counts = model(x, output="routed")
            torch.testing.assert_close(model(x), logits)  # eval output of a routed model
        return logits, counts, model

    everyone, all_counts, model = routed(0.0)
    alone, one_counts, _ = routed(1.0)
    assert all_counts.tolist() == [EXPERTS] * 32 and one_counts.tolist() == [1] * 32
    with torch.no_grad():
        expert_logits, router_logits = model(x, output="router")
    torch.testing.assert_close(everyone, expert_logits.mean(0))
    torch.testing.assert_close(alone, expert_logits[0])
    # a threshold in the middle of the first decisions: half stop after expert 0, the others go on as
    # far as their later decisions allow
    probabilities = router_logits.sigmoid()
    middle = probabilities[0].sort().values[15:17]
    threshold = float(middle.mean())  # between two samples' probabilities: no ties
    logits, counts, _ = routed(threshold)
    go_on = probabilities > threshold
    expected_counts = 1 + go_on[0].long() * (1 + go_on[1].long())
    assert counts.tolist() == expected_counts.tolist() and len(set(counts.tolist())) > 1
    means = expert_logits.cumsum(0) / torch.arange(1, EXPERTS + 1)[:, None, None]
    torch.testing.assert_close(logits, means[counts - 1, torch.arange(32)])
    # the more demanding the threshold, the fewer experts
    assert (routed(0.9 * threshold)[1] >= counts).all() and (routed(min(1.0, 1.1 * threshold))[1] <= counts).all()
    # unrouted, evaluation averages every expert whatever the threshold
    model.routed = False
    with torch.no_grad():
        torch.testing.assert_close(model(x), expert_logits.mean(0))


def test_the_router_loss_is_binary_cross_entropy_with_its_positive_weight():
    model = tiny_ride()
    model.requires_grad_(False)
    model.router.requires_grad_(True)
    model.routed = True
    x, y = batch()
    loss, logits = RIDERouterMethod(pos_weight=100.0).training_loss(model, x, y, CrossEntropy(), 0)
    expert_logits, router_logits = model(x, output="router")
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        router_logits, router_targets(expert_logits, y).float(), pos_weight=torch.tensor(100.0)
    )
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logits, expert_logits.mean(0))
    loss.backward()
    assert all(p.grad is not None for p in model.router.parameters())
    assert all(p.grad is None for p in model.experts.parameters())


# --------------------------------------------------------------------------- the trainer


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("ride_data") / "tiny")


def ride_config(tiny_data, stage: int, epochs: int, after: list[str] = (), extra: list[str] = ()):
    before = [*tiny_overrides(tiny_data, epochs), *QUIET, *extra]
    return preset_config(PRESETS["ride"], stage, None, before, [f"schedule.epochs={epochs}", *after])


@pytest.mark.parametrize("name", available_models())
def test_one_step_of_the_ride_preset_on_every_backbone(tiny_data, tmp_path, name):
    config = ride_config(tiny_data, 0, 1, extra=[f"model.name={name}", "train.batch_size=16"])
    result = train(config, tmp_path / "run")
    assert np.isfinite(result["test"]["top1"])
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["history"][0]["epoch"] == 1 and np.isfinite(state["history"][0]["loss"])
    assert {key.split(".")[0] for key in state["model"]} == {"_extra_state", "trunk", "experts", "router"}


def test_both_stages_train_and_resume_exactly_and_evaluation_uses_the_router(tiny_data, tmp_path):
    first = ride_config(tiny_data, 0, 2)
    assert (first.model.ride_experts, first.method.name, first.loss.name, first.loss.drw_epoch) == (3, "ride", "ldam", 1)
    _, stage1, _ = assert_resumed_run_matches(first, tmp_path / "stage1")
    assert stage1["model"]["_extra_state"] == {"routed": False} and stage1["method"] == {}

    checkpoint = tmp_path / "stage1" / "full" / "last.pt"
    second = ride_config(tiny_data, 1, 2, after=[f"finetune.checkpoint={checkpoint}"], extra=["train.batch_size=16"])
    assert (second.finetune.kind, second.data.sampler, second.optim.lr) == ("ride_router", "class_balanced", pytest.approx(0.01))
    _, stage2, _ = assert_resumed_run_matches(second, tmp_path / "stage2")
    assert stage2["model"]["_extra_state"] == {"routed": True}
    for key, value in stage1["model"].items():  # only the router changed
        if key.startswith("router."):
            assert not torch.equal(value, stage2["model"][key]), key
        elif key != "_extra_state":
            assert torch.equal(value, stage2["model"][key]), key

    # evaluation: threshold 0 is the mean of every expert (the first stage's output), 1 expert 0
    routed = tmp_path / "stage2" / "full" / "last.pt"
    every = evaluate_checkpoint(routed, overrides=["model.ride_router_threshold=0"], device="cpu")
    unrouted = evaluate_checkpoint(checkpoint, device="cpu")
    np.testing.assert_array_equal(every.per_class, unrouted.per_class)
    default = json.loads((tmp_path / "stage2" / "full" / "metrics.json").read_text())["test"]
    assert evaluate_checkpoint(routed, device="cpu").top1 == pytest.approx(default["top1"])
    # export traces the routed ensemble
    result = export_checkpoint(routed, tmp_path / "ride.pt")
    assert result.max_abs_difference < 1e-4


def test_the_router_stage_needs_ride_experts(tiny_data, tmp_path):
    plain = tmp_path / "plain"
    train(load_config(None, [*tiny_overrides(tiny_data, 1), *QUIET]), plain)
    config = load_config(None, [
        *tiny_overrides(tiny_data, 1), *QUIET, "method.name=ride", "model.ride_experts=3",
        "finetune.kind=ride_router", f"finetune.checkpoint={plain / 'last.pt'}",
    ])
    with pytest.raises(ValueError, match="the second stage must use the first stage's model config"):
        train(config, tmp_path / "router")


# --------------------------------------------------------------------------- host reads


class RIDESteps:
    """Both stages' steps on a tiny RIDE CTR-GCN, as the trainer takes them (LDAM-DRW switching
    to re-weighting, and so to the per-class temperatures, at the second epoch)."""

    def __init__(self, device: torch.device) -> None:
        self.model = tiny_ride(classifier="cosine", cosine_scale=30.0).to(device)
        self.criterion = DeferredReweighting(LDAMLoss(CLASS_COUNTS, 15.0, 1.0), CLASS_COUNTS, start_epoch=1).to(device)
        self.x, self.y = (tensor.to(device) for tensor in batch(size=16))
        self.experts = RIDEExpertsMethod(CLASS_COUNTS, -0.45, 1.0, 0.05)
        self.router = RIDERouterMethod(100.0)
        self.totals = torch.zeros(3, dtype=torch.float64, device=device)

    def step(self, epoch: int, router: bool = False) -> None:
        method = self.router if router else self.experts
        self.criterion.set_epoch(epoch)
        loss, logits = method.training_loss(self.model, self.x, self.y, self.criterion, epoch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.totals[0] += loss.detach().double() * len(self.y)
            self.totals[1] += (logits.argmax(1) == self.y).sum()
            self.totals[2] += len(self.y)

    def run(self, guard) -> None:
        """Two expert epochs, then a router epoch: each epoch's first step unguarded (set-up)."""
        self.optimizer = torch.optim.SGD([p for p in self.model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
        for epoch in (0, 1):
            self.step(epoch)
            with guard():
                self.step(epoch)
                self.step(epoch)
        self.model.requires_grad_(False)
        self.model.router.requires_grad_(True)
        self.model.routed = True
        self.optimizer = torch.optim.SGD(self.model.router.parameters(), lr=0.01, momentum=0.9)
        self.step(2, router=True)
        with guard():
            self.step(2, router=True)


def test_cpu_steps_of_both_stages_read_nothing_back_to_the_host(monkeypatch):
    steps = RIDESteps(torch.device("cpu"))
    steps.run(lambda: no_host_reads(monkeypatch))
    assert torch.isfinite(steps.totals).all() and steps.totals[2] == 16 * 8


def test_gpu_steps_of_both_stages_never_synchronise(cuda_device):  # noqa: F811
    steps = RIDESteps(cuda_device)

    @contextmanager
    def sync_errors() -> Iterator[None]:
        with ExitStack() as stack:
            torch.cuda.synchronize(cuda_device)
            torch.cuda.set_sync_debug_mode("error")
            stack.callback(torch.cuda.set_sync_debug_mode, "default")
            yield

    steps.run(sync_errors)
    assert torch.isfinite(steps.totals).all()
