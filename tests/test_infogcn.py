"""Tests for the InfoGCN backbone: original checkpoints, names and its information-bottleneck objective."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import shared_data
from shapmix.engine.finetune import classifier_of
from shapmix.methods import TrainingMethod
from shapmix.losses import BalancedSoftmax, CrossEntropy, classifier_module, smooth_targets
from shapmix.models import InfoGCN, build_model, load_original_checkpoint
from shapmix.models.infogcn import class_prior_mmd

NTU60_PARAMETERS = 1_556_807  # the original's count (reference README)
NTU60_ORIGINAL_KEYS = 611


def tiny_model(**overrides) -> InfoGCN:
    options = dict(num_classes=5, layout="ntu25", num_persons=2, base_channels=8, num_blocks=3)
    options.update(overrides)
    return build_model("infogcn", **options)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- the original's weights


def test_full_size_model_has_the_originals_parameters_and_names():
    model = build_model("infogcn", num_classes=60, layout="ntu25", num_persons=2)
    assert count_parameters(model) == NTU60_PARAMETERS
    state = model.state_dict()
    assert len(state) == NTU60_ORIGINAL_KEYS + 1  # + our z_prior buffer
    assert state["z_prior"].shape == (60, 256) and "A_vector" not in state
    assert {"pos_embedding", "to_joint_embedding.weight", "l1.agcn.shared_topology", "l1.agcn.attn.to_qk.weight",
            "l1.agcn.conv_d.2.weight", "l4.residual.conv.weight", "l9.tcn.branches.2.4.running_var",
            "fc.weight", "fc_mu.bias", "fc_logvar.weight", "decoder.weight"} <= set(state)


def test_original_checkpoint_reproduces_logits_and_latent():
    reference = torch.load(shared_data("backbone_reference", "infogcn_ntu60_reference.pt"), weights_only=True)
    model = build_model("infogcn", num_classes=60, layout="ntu25", num_persons=2)
    assert count_parameters(model) == reference["num_parameters"]
    assert set(model.state_dict()) == set(reference["state_dict"]) | {"z_prior"}
    load_original_checkpoint(model, model.convert_original_state_dict(reference["state_dict"]))
    model.eval()
    with torch.no_grad():
        logits, z = model(reference["input"], return_latent=True)
    scale = reference["logits"].abs().max()
    assert (logits - reference["logits"]).abs().max() / scale < 1e-5
    assert (z - reference["z"]).abs().max() / scale < 1e-5


def test_state_dict_round_trip_under_original_names_reproduces_the_function():
    torch.manual_seed(0)
    source = tiny_model()
    with torch.no_grad():
        for tensor in source.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.1 * torch.randn_like(tensor))
    # an original checkpoint: no z_prior, DDP prefix, wrapped in "state_dict"
    original = {"module." + k: v.clone() for k, v in source.state_dict().items() if k != "z_prior"}
    torch.manual_seed(1)
    target = tiny_model()
    own_prior = target.z_prior.clone()
    converted = target.convert_original_state_dict({k[len("module."):]: v for k, v in original.items()})
    load_original_checkpoint(target, {"state_dict": {"module." + k: v for k, v in converted.items()}})
    assert torch.equal(target.z_prior, own_prior)  # the original never saves its priors
    assert torch.equal(target.convert_original_state_dict(source.state_dict())["z_prior"], source.z_prior)
    x = torch.randn(3, 3, 12, 25, 2)
    source.eval(), target.eval()
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_every_parameter_has_its_own_storage():
    """Blocks are built from one shared topology array; each must own a copy, or loading a
    checkpoint writes every block's tensor into the same memory."""
    pointers = [p.data_ptr() for p in tiny_model().parameters()]
    assert len(pointers) == len(set(pointers))


def test_classifier_is_the_decoder_for_losses_and_second_stages():
    model = tiny_model(classifier="cosine")
    assert classifier_module(model) is model.decoder is classifier_of(model)
    assert "decoder.bias" not in model.state_dict()


# --------------------------------------------------------------------------- the latent


def test_latent_is_the_mean_in_eval_and_a_seeded_sample_in_training():
    model = tiny_model()
    x = torch.randn(4, 3, 12, 25, 2)
    model.eval()
    with torch.no_grad():
        logits, z = model(x, return_latent=True)
        features = model.forward_features(x)
        pooled = model.pool(features)
        mu = model.fc_mu(F.relu(model.fc(pooled)))
        assert torch.equal(z, mu)
        assert torch.equal(logits, model.decoder(z)) and torch.equal(logits, model.head(features, 2))
    model.train()
    torch.manual_seed(5)
    first = model(x, return_latent=True)[1]
    torch.manual_seed(5)
    second = model(x, return_latent=True)[1]
    third = model(x, return_latent=True)[1]
    assert torch.equal(first, second) and not torch.equal(first, third)


# --------------------------------------------------------------------------- the objective


def original_mmd(z: torch.Tensor, prior: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """InfoGCN's loss.py get_mmd_loss, written out per class."""
    present = sorted(set(y.tolist()))
    means = torch.stack([z[y == c].mean(dim=0) for c in present])
    return F.mse_loss(means, prior[present])


def test_mmd_is_zero_at_the_class_priors_and_grows_away_from_them():
    prior = tiny_model().z_prior
    y = torch.tensor([0, 2, 2, 4, 0])
    targets = F.one_hot(y, 5).float()
    at_prior = prior[y].clone()
    assert class_prior_mmd(at_prior, targets, prior) == 0
    direction = torch.randn_like(at_prior)
    values = [class_prior_mmd(at_prior + step * direction, targets, prior).item() for step in (0.1, 0.2, 0.4)]
    assert 0 < values[0] < values[1] < values[2]
    z = torch.randn(5, prior.shape[1])
    torch.testing.assert_close(class_prior_mmd(z, targets, prior), original_mmd(z, prior, y))


def test_mmd_of_soft_targets_compares_every_latent_with_its_mixed_prior():
    prior = tiny_model().z_prior
    targets = torch.tensor([[0.7, 0.3, 0, 0, 0], [0, 0, 1.0, 0, 0], [0.25, 0, 0, 0, 0.75]])
    mixed_prior = targets @ prior
    assert class_prior_mmd(mixed_prior, targets, prior) < 1e-12
    # one mixed sample off its mixed prior by d: class 0 and 1 both see the residual
    offset = torch.zeros_like(mixed_prior)
    offset[0, 0] = 1.0
    value = class_prior_mmd(mixed_prior + offset, targets, prior)
    # class 0 mean residual: 0.7 * 1 / (0.7 + 0.25); class 1: 1; classes 2, 4: 0 (one dimension of D)
    expected = ((0.7 / 0.95) ** 2 + 1.0) / (4 * prior.shape[1])
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_auxiliary_loss_weights_and_no_gradient_into_the_priors():
    model = tiny_model()
    y = torch.tensor([1, 3, 3])
    z = torch.randn(3, model.out_channels, requires_grad=True)
    loss = model.auxiliary_loss(z, y)
    expected = 0.1 * original_mmd(z, model.z_prior, y) + 1e-4 * z.mean(dim=0).norm()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert not model.z_prior.requires_grad and model.z_prior.grad is None
    assert "z_prior" in model.state_dict() and "z_prior" not in dict(model.named_parameters())


def test_label_smoothing_is_infogcns_label_smoothing_cross_entropy():
    logits = torch.randn(6, 5)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    log_probabilities = F.log_softmax(logits, dim=-1)
    original = (0.9 * -log_probabilities.gather(1, y[:, None]).squeeze(1) + 0.1 * -log_probabilities.mean(dim=-1)).mean()
    torch.testing.assert_close(CrossEntropy()(logits, smooth_targets(y, logits, 0.1)), original)
    soft = torch.softmax(torch.randn(6, 5), dim=1)
    smoothed = smooth_targets(soft, logits, 0.1)
    torch.testing.assert_close(smoothed.sum(dim=1), torch.ones(6))
    torch.testing.assert_close(smoothed, 0.9 * soft + 0.02)


class FixedMix(TrainingMethod):
    def __init__(self, x_mixed: torch.Tensor, soft: torch.Tensor) -> None:
        self.x_mixed, self.soft = x_mixed, soft

    def mix(self, x, y, epoch):
        return self.x_mixed, self.soft


def test_training_loss_adds_the_objective_to_smoothed_clean_and_mixed_losses():
    model = tiny_model()
    model.train()
    x, x_mixed = torch.randn(2, 4, 3, 12, 25, 2)
    y = torch.tensor([0, 1, 1, 4])
    soft = torch.softmax(torch.randn(4, 5), dim=1)
    criterion = BalancedSoftmax([40, 20, 10, 5, 2])
    torch.manual_seed(3)
    loss, logits = FixedMix(x_mixed, soft).training_loss(model, x, y, criterion, epoch=0)
    torch.manual_seed(3)  # the same latent noise
    all_logits, z = model(torch.cat([x, x_mixed]), return_latent=True)
    expected = (
        criterion(all_logits[:4], smooth_targets(y, all_logits[:4], 0.1))
        + criterion(all_logits[4:], smooth_targets(soft, all_logits[4:], 0.1))
        + model.auxiliary_loss(z, torch.cat([F.one_hot(y, 5).float(), soft]))
    )
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logits, all_logits[:4])
    # without mixing the objective sees the hard labels
    torch.manual_seed(3)
    plain, _ = TrainingMethod().training_loss(model, x, y, criterion, epoch=0)
    torch.manual_seed(3)
    clean_logits, clean_z = model(x, return_latent=True)
    torch.testing.assert_close(plain, criterion(clean_logits, smooth_targets(y, clean_logits, 0.1)) + model.auxiliary_loss(clean_z, y))


def test_constructor_rejects_bad_options():
    with pytest.raises(ValueError, match="at least 8"):
        tiny_model(base_channels=4)
    with pytest.raises(ValueError, match="at least 1"):
        tiny_model(relative_order=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        tiny_model(label_smoothing=1.0)
    with pytest.raises(ValueError, match=r"expected \(C, V, M\)"):
        tiny_model()(torch.randn(2, 3, 8, 20, 2))
