"""Long-tailed losses: each one's defining property, soft targets, the cosine head and tiny runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import SimulatedInterruption, make_tiny_dataset, tiny_config
from shapmix.config import ConfigError, LossConfig, load_config
from shapmix.losses import (
    ClassBalancedLoss,
    DeferredReweighting,
    FocalLoss,
    InfluenceBalancedLoss,
    LDAMLoss,
    build_loss,
    effective_number_weights,
    ldam_margins,
)
from shapmix.models import build_model

COUNTS = np.array([200, 60, 15, 3])
K = len(COUNTS)
LATE_EPOCH = 10**6  # after every switch epoch: DRW and IB active


def random_batch(n=9, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, K, generator=generator, dtype=torch.float64) * 2
    labels = torch.randint(0, K, (n,), generator=generator)
    return logits, labels


def loss_from(epochs=20, **keys):
    loss = build_loss(LossConfig(**keys), COUNTS, total_epochs=epochs).double()
    return loss


# --------------------------------------------------------------------------- focal


def test_focal_with_gamma_zero_is_cross_entropy_and_gamma_down_weights_easy_samples():
    logits, labels = random_batch()
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, labels), F.cross_entropy(logits, labels))
    # one easy (p_y ~ 0.95) and one hard (p_y ~ 0.006) sample of class 0
    easy = torch.tensor([[4.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    hard = torch.tensor([[-4.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    label = torch.tensor([0])
    focal = FocalLoss(gamma=2.0)
    for sample in (easy, hard):
        p = torch.softmax(sample, 1)[0, 0]
        torch.testing.assert_close(focal(sample, label), (1 - p) ** 2 * F.cross_entropy(sample, label))
    easy_ratio = focal(easy, label) / F.cross_entropy(easy, label)
    hard_ratio = focal(hard, label) / F.cross_entropy(hard, label)
    assert easy_ratio < 0.01 and hard_ratio > 0.9


# --------------------------------------------------------------------------- class-balanced


def test_class_balanced_weights_follow_the_effective_number_and_favour_rare_classes():
    beta = 0.999
    weights = effective_number_weights(COUNTS, beta).double()
    effective = (1 - beta ** COUNTS) / (1 - beta)
    expected = torch.tensor(1 / effective) / (1 / effective).sum() * K
    torch.testing.assert_close(weights, expected)
    assert torch.all(weights[1:] > weights[:-1])  # rarer class, larger weight
    torch.testing.assert_close(weights.sum(), torch.tensor(float(K), dtype=torch.float64))

    logits, labels = random_batch()
    loss = ClassBalancedLoss(COUNTS, beta).double()
    expected_loss = (weights[labels] * F.cross_entropy(logits, labels, reduction="none")).mean()
    torch.testing.assert_close(loss(logits, labels), expected_loss)
    # focal base: the same weights on the focal terms
    focal = ClassBalancedLoss(COUNTS, beta, base="focal", gamma=2.0).double()
    p = torch.softmax(logits, 1).gather(1, labels[:, None])[:, 0]
    focal_terms = (1 - p) ** 2 * F.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(focal(logits, labels), (weights[labels] * focal_terms).mean())


def test_class_balanced_with_beta_zero_is_cross_entropy():
    logits, labels = random_batch()
    torch.testing.assert_close(ClassBalancedLoss(COUNTS, beta=0.0).double()(logits, labels),
                               F.cross_entropy(logits, labels))


# --------------------------------------------------------------------------- LDAM


def test_ldam_margins_scale_as_inverse_fourth_root_with_the_largest_for_the_rarest_class():
    margins = ldam_margins(COUNTS, 0.5).double()
    assert margins.max().item() == pytest.approx(0.5) and margins.argmax().item() == K - 1
    torch.testing.assert_close(margins * torch.tensor(COUNTS, dtype=torch.float64) ** 0.25,
                               torch.full((K,), 0.5 * 3**0.25, dtype=torch.float64))


def test_ldam_subtracts_the_margin_from_the_true_class_logit_only():
    loss = LDAMLoss(COUNTS, max_margin=0.5, scale=30.0).double()
    margins = loss.margins
    cosines = torch.tanh(random_batch()[0])  # cosine-like logits in (-1, 1)
    labels = random_batch()[1]
    true_class = F.one_hot(labels, K).bool()
    expected = F.cross_entropy(30 * torch.where(true_class, cosines - margins, cosines), labels)
    torch.testing.assert_close(loss(cosines, labels), expected)
    # extreme logits stay exact (a saturated softmax must not lose the margin term)
    extreme = torch.tensor([[5.0, -5.0, 0.0, 0.0], [0.0, 0.0, 0.0, 9.0]], dtype=torch.float64)
    per_class = loss.class_losses(extreme)
    for k in range(K):
        label = torch.full((2,), k)
        shifted = 30 * (extreme - margins[k] * F.one_hot(label, K))
        torch.testing.assert_close(per_class[:, k], F.cross_entropy(shifted, label, reduction="none"))
    assert torch.isfinite(per_class).all()


# --------------------------------------------------------------------------- DRW


@pytest.mark.parametrize("base", ["ce", "focal", "ldam"])
def test_drw_reweights_from_drw_epoch_exactly(base):
    loss = loss_from(name=base, drw_epoch=3, drw_beta=0.9999)
    assert isinstance(loss, DeferredReweighting)
    logits, labels = random_batch()
    weights = effective_number_weights(COUNTS, 0.9999).double()
    per_sample = loss.base.class_losses(logits).gather(1, labels[:, None])[:, 0]
    for epoch in (0, 2):
        loss.set_epoch(epoch)
        torch.testing.assert_close(loss(logits, labels), loss.base(logits, labels))
    for epoch in (3, 7):
        loss.set_epoch(epoch)
        expected = (weights[labels] * per_sample).sum() / weights[labels].sum()
        torch.testing.assert_close(loss(logits, labels), expected)
    if base == "ce":  # the weighted mean of nn.CrossEntropyLoss(weight=...), as the reference code
        torch.testing.assert_close(loss(logits, labels), F.cross_entropy(logits, labels, weight=weights))
    assert not torch.allclose(loss(logits, labels), loss.base(logits, labels))


# --------------------------------------------------------------------------- influence-balanced


class TinyNet(nn.Module):
    """Features -> ReLU -> ``fc``: a model with a classifier module, as CTR-GCN."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(5, 6)
        self.fc = nn.Linear(6, K)

    def forward(self, x):
        return self.fc(torch.relu(self.body(x)))


def test_influence_balanced_matches_its_formula_and_is_cross_entropy_before_the_start():
    loss = loss_from(name="influence_balanced", ib_alpha=1000.0, ib_start_epoch=4)
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.0, 0.0, 3.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 3])
    features = torch.tensor([[1.0, -2.0, 0.5], [0.25, 0.0, -0.25]], dtype=torch.float64)
    loss.set_epoch(3)
    torch.testing.assert_close(loss(logits, labels, features), F.cross_entropy(logits, labels))
    loss.set_epoch(4)
    # by hand: class weights 1/n normalised to sum K; gradient norm |softmax - onehot|_1;
    # feature norm |h|_1 = 3.5 and 0.5; epsilon 1e-3 as in the reference code
    inverse = 1 / COUNTS
    class_weight = torch.tensor(inverse / inverse.sum() * K)
    gradient_l1 = (torch.softmax(logits, 1) - F.one_hot(labels, K)).abs().sum(1)
    influence = gradient_l1 * torch.tensor([3.5, 0.5], dtype=torch.float64)
    cross_entropy = F.cross_entropy(logits, labels, reduction="none")
    expected = (class_weight[labels] * cross_entropy * 1000.0 / (influence + 1e-3)).mean()
    torch.testing.assert_close(loss(logits, labels, features), expected)
    # ib_start_epoch=null starts at half the schedule
    assert loss_from(epochs=30, name="influence_balanced").start_epoch == 15


def test_influence_balanced_takes_the_classifier_input_from_a_hook_in_order():
    model = TinyNet().double()
    loss = loss_from(name="influence_balanced", ib_start_epoch=0)
    loss.set_epoch(0)
    loss.attach(model)
    x = torch.randn(6, 5, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    soft = F.one_hot(labels, K).double().roll(1, 0) * 0.5 + F.one_hot(labels, K).double() * 0.5
    logits = model(x)
    hooked = loss(logits[:3], labels[:3]) + loss(logits[3:], soft[3:])
    features = torch.relu(model.body(x))
    explicit = loss(logits[:3], labels[:3], features[:3]) + loss(logits[3:], soft[3:], features[3:])
    torch.testing.assert_close(hooked, explicit)
    with pytest.raises(RuntimeError, match="consecutive slices"):
        loss(logits[:1], labels[:1])  # all rows of the last forward are used up
    # the influence weight is part of the graph, as in the reference: gradients reach the body
    model.zero_grad()
    loss(model(x), labels).backward()
    assert model.body.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- soft targets

ALL_LOSSES = [
    {"name": "ce"},
    {"name": "balanced_softmax"},
    {"name": "focal"},
    {"name": "class_balanced"},
    {"name": "class_balanced", "cb_base": "focal"},
    {"name": "ldam"},
    {"name": "ce", "drw_epoch": 0},
    {"name": "ldam", "drw_epoch": 0},
    {"name": "influence_balanced", "ib_start_epoch": 0},
]


def call(loss, logits, target, features):
    if isinstance(loss, InfluenceBalancedLoss):
        return loss(logits, target, features)
    return loss(logits, target)


@pytest.mark.parametrize("keys", ALL_LOSSES, ids=lambda keys: "-".join(map(str, keys.values())))
def test_one_hot_soft_targets_give_the_hard_target_loss(keys):
    loss = loss_from(**keys)
    loss.set_epoch(LATE_EPOCH)
    logits, labels = random_batch()
    features = torch.rand(len(labels), 3, dtype=torch.float64)
    one_hot = F.one_hot(labels, K).double()
    torch.testing.assert_close(call(loss, logits, one_hot, features), call(loss, logits, labels, features))


@pytest.mark.parametrize("keys", [k for k in ALL_LOSSES if "drw_epoch" not in k],
                         ids=lambda keys: "-".join(map(str, keys.values())))
def test_a_mixed_target_gets_the_mixture_of_the_two_losses(keys):
    loss = loss_from(**keys)
    loss.set_epoch(LATE_EPOCH)
    logits, a = random_batch(seed=1)
    b = (a + 1) % K
    features = torch.rand(len(a), 3, dtype=torch.float64)
    lam = 0.3
    soft = lam * F.one_hot(a, K).double() + (1 - lam) * F.one_hot(b, K).double()
    expected = lam * call(loss, logits, a, features) + (1 - lam) * call(loss, logits, b, features)
    torch.testing.assert_close(call(loss, logits, soft, features), expected)


def test_loss_buffers_move_with_the_module_and_bad_targets_fail():
    loss = loss_from(name="ldam", drw_epoch=1).float()
    assert loss.base.margins.dtype == torch.float32 and loss.class_weight.dtype == torch.float32
    assert {name for name, _ in loss.named_buffers()} == {"class_weight", "base.margins"}
    with pytest.raises(ValueError, match="do not match"):
        loss(torch.randn(3, K), torch.rand(3, K + 1))
    with pytest.raises(ValueError, match="integer class ids"):
        loss(torch.randn(3, K), torch.rand(3))


# --------------------------------------------------------------------------- configuration


def test_config_defaults_are_the_papers_and_bad_combinations_are_errors():
    defaults = LossConfig()
    assert (defaults.focal_gamma, defaults.cb_beta, defaults.ldam_max_margin, defaults.ldam_scale,
            defaults.drw_beta, defaults.ib_alpha) == (2.0, 0.9999, 0.5, 30.0, 0.9999, 1000.0)
    assert defaults.drw_epoch is None and defaults.ib_start_epoch is None
    with pytest.raises(ConfigError, match="drw_epoch applies to"):
        load_config(None, ["loss.name=class_balanced", "loss.drw_epoch=2"])
    with pytest.raises(ConfigError, match="drw_epoch=10 must be smaller than schedule.epochs=10"):
        load_config(None, ["loss.name=ldam", "loss.drw_epoch=10", "schedule.epochs=10"])
    with pytest.raises(ConfigError, match="ib_start_epoch=12 must be smaller"):
        load_config(None, ["loss.name=influence_balanced", "loss.ib_start_epoch=12", "schedule.epochs=10"])
    with pytest.raises(ConfigError, match="cb_base"):
        load_config(None, ["loss.cb_base=sigmoid"])
    config = load_config(None, ["loss.name=ldam", "loss.drw_epoch=8", "model.args.classifier=cosine"])
    assert config.loss.drw_epoch == 8 and config.model.args["classifier"] == "cosine"


# --------------------------------------------------------------------------- cosine classifier


def test_cosine_classifier_bounds_logits_by_its_scale_and_keeps_checkpoint_keys():
    options = {"num_classes": K, "layout": "kinect_v1", "num_persons": 1, "base_channels": 4, "num_blocks": 1}
    torch.manual_seed(0)
    linear = build_model("ctrgcn", **options)
    cosine = build_model("ctrgcn", **options, classifier="cosine", cosine_scale=16.0)
    x = torch.randn(5, 3, 4, 20, 1) * 10
    logits = cosine(x)
    assert logits.abs().max() <= 16.0 + 1e-4
    features = cosine.pool(cosine.forward_features(x))
    expected = 16.0 * F.cosine_similarity(features[:, None, :], cosine.fc.weight[None, :, :], dim=2)
    torch.testing.assert_close(logits, expected)
    linear_keys, cosine_keys = set(linear.state_dict()), set(cosine.state_dict())
    assert {"fc.weight", "fc.bias"} <= linear_keys
    assert linear_keys - cosine_keys == {"fc.bias"} and cosine_keys <= linear_keys
    assert cosine.state_dict()["fc.weight"].shape == linear.state_dict()["fc.weight"].shape
    with pytest.raises(ValueError, match="classifier must be"):
        build_model("ctrgcn", **options, classifier="mlp")


# --------------------------------------------------------------------------- tiny runs


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny-lt") / "data")


@pytest.mark.parametrize("extra", [
    ["loss.name=ldam", "loss.drw_epoch=1", "model.args={base_channels: 8, num_blocks: 3, classifier: cosine}"],
    ["loss.name=influence_balanced", "loss.ib_start_epoch=1"],
], ids=["ldam-drw", "influence_balanced"])
def test_tiny_run_switches_its_loss_at_the_epoch_also_after_a_resume(tiny_data, tmp_path, extra):
    from shapmix.engine.trainer import train

    config = tiny_config(tiny_data, epochs=2, extra=extra + ["log.plots=false"])
    switched = []

    def record_switch(trainer, epoch, record):
        criterion = trainer.criterion
        switched.append(criterion.reweighting if isinstance(criterion, DeferredReweighting) else criterion.active)
        assert np.isfinite(record["loss"])

    def crash_after_first_epoch(trainer, epoch, record):
        raise SimulatedInterruption

    with pytest.raises(SimulatedInterruption):
        train(config, tmp_path, callbacks=[record_switch, crash_after_first_epoch])
    result = train(config, tmp_path, resume=True, callbacks=[record_switch])
    # epoch 0 before the switch; the resumed process (a fresh loss) switches at epoch 1
    assert switched == [False, True]
    assert np.isfinite(result["test"]["top1"])
