"""Long-tailed mixing baselines: Remix's label rule and GLMC's losses, heads and training run."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from shapmix.config import ConfigError, load_config
from shapmix.engine.checkpoint import load_checkpoint
from shapmix.methods import GLMCMethod, TrainingNetwork, build_method
from shapmix.engine.trainer import train
from shapmix.mixing import Remix, remix_label_ratio
from shapmix.mixing.glmc import (
    cumulative_weight,
    global_local_mix,
    label_weights,
    mixture_consistency,
    resampling_weights,
)

from helpers import (
    TINY_CLASSES,
    assert_same_content,
    make_tiny_dataset,
    tiny_config,
    train_interrupted_then_resumed,
)

KAPPA, TAU = 3.0, 0.5
GLMC_EXTRA = ["method.name=glmc", "loss.name=ce", "train.threads=1", "log.plots=false"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


# ------------------------------------------------------------------------------------- Remix


def test_remix_label_rule_on_hand_made_counts():
    # lam is the partner's share of the input; the sample's own share is 1 - lam
    own = torch.tensor([300.0, 300.0, 10.0, 10.0, 100.0, 300.0])
    partner = torch.tensor([10.0, 10.0, 300.0, 300.0, 50.0, 100.0])
    lam = torch.tensor([0.7, 0.3, 0.3, 0.7, 0.8, 0.9])
    expected = torch.tensor(
        [
            1.0,  # head sample (ratio 30 >= 3) keeps only 0.3 < tau of the input: label -> partner
            0.3,  # head sample keeps 0.7 >= tau: the ordinary mixed label
            0.0,  # head partner (ratio 1/30 <= 1/3) gives only 0.3 < tau: label stays with the sample
            0.7,  # head partner gives 0.7 >= tau: mixed label
            0.8,  # ratio 2 < kappa: never re-balanced
            1.0,  # ratio exactly kappa counts as head vs tail
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(remix_label_ratio(lam, own, partner, KAPPA, TAU), expected)


def test_remix_mixes_inputs_like_mixup_and_rebalances_only_the_labels():
    counts = torch.tensor([100, 30, 5])
    y = torch.tensor([0, 2, 0, 1, 2, 0, 1, 0])
    x = torch.randn(len(y), 3, 8, 25, 2)
    remix = Remix(3, counts, kappa=KAPPA, tau=TAU, seed=3)
    x_mixed, targets, info = remix.mix_with_info(x, y)
    share = info.lam.float()[:, None, None, None, None]
    torch.testing.assert_close(x_mixed, (1 - share) * x + share * x[info.partner])
    label_lam = remix_label_ratio(info.lam, counts[y].double(), counts[y[info.partner]].double(), KAPPA, TAU)
    expected = (1 - label_lam.float())[:, None] * torch.eye(3)[y] + label_lam.float()[:, None] * torch.eye(3)[y[info.partner]]
    torch.testing.assert_close(targets, expected)
    # the draw covers all three cases of the rule (else the comparison above proves little)
    assert (label_lam == 1).any() and (label_lam == 0).any() and ((label_lam > 0) & (label_lam < 1)).any()


def test_remix_is_built_from_the_config_with_paper_defaults(tiny_data):
    config = load_config(None, [f"data.path={tiny_data}", "method.name=remix"]).method
    assert (config.remix_alpha, config.remix_kappa, config.remix_tau) == (1.0, 3.0, 0.5)
    method = build_method(config, 3, [100, 30, 5], "ntu25", seed=0)
    assert method.name == "remix" and isinstance(method.mixer, Remix)
    assert method.mixer.kappa == 3.0 and method.mixer.tau == 0.5


def test_remix_refuses_counts_of_the_wrong_size():
    with pytest.raises(ValueError, match="class_counts"):
        Remix(3, [10, 5])


# ------------------------------------------------------------------------------------- GLMC


def test_glmc_cumulative_weight_moves_from_the_conventional_to_the_rebalanced_loss():
    epochs = 200
    assert cumulative_weight(0, epochs) == 1.0
    assert cumulative_weight(100, epochs) == pytest.approx(0.75)  # 1 - (1/2)^2
    assert cumulative_weight(epochs, epochs) == 0.0
    schedule = [cumulative_weight(e, epochs) for e in range(epochs + 1)]
    assert all(later < earlier for earlier, later in zip(schedule, schedule[1:]))
    with pytest.raises(ValueError):
        cumulative_weight(3, 2)


def test_mixture_consistency_is_negative_cosine_with_stop_gradient():
    projection = torch.randn(6, 16, requires_grad=True)
    aligned = (2.5 * projection).detach().requires_grad_()  # same direction, other length
    assert mixture_consistency(aligned, projection).item() == pytest.approx(-1.0)
    assert mixture_consistency(-aligned, projection).item() == pytest.approx(1.0)
    orthogonal = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert mixture_consistency(orthogonal, orthogonal.flip(1)).item() == pytest.approx(0.0)
    mixture_consistency(torch.randn(6, 16, requires_grad=True), projection).backward()
    assert projection.grad is None  # the target branch is a stop-gradient


def test_glmc_label_and_sampling_weights():
    counts = np.array([100, 10, 1])
    weights = label_weights(counts, 1.0)
    torch.testing.assert_close(weights.sum(), torch.tensor(3.0, dtype=torch.float64))
    torch.testing.assert_close(weights / weights[2], torch.tensor([0.01, 0.1, 1.0], dtype=torch.float64))
    labels = np.repeat(np.arange(3), counts)
    # power 1 is class-balanced: each class is drawn a third of the time
    balanced = resampling_weights(labels, counts, 1.0)
    drawn = labels[torch.multinomial(balanced, 30_000, replacement=True, generator=torch.Generator().manual_seed(0))]
    np.testing.assert_allclose(np.bincount(drawn) / 30_000, 1 / 3, atol=5 * np.sqrt(2 / 9 / 30_000))
    # power 0.2 (the reference default) keeps class c's share proportional to n_c^0.8
    partial = resampling_weights(labels, counts, 0.2)
    share = np.array([partial[labels == c].sum().item() for c in range(3)]) / partial.sum().item()
    np.testing.assert_allclose(share, counts**0.8 / (counts**0.8).sum())


def test_global_local_mix_pastes_a_box_of_the_resampled_batch_with_its_exact_share():
    x = torch.zeros(16, 3, 20, 25, 1)
    resampled = torch.ones(16, 3, 20, 25, 1)
    mix = global_local_mix(x, resampled, 1.0, torch.Generator().manual_seed(4))
    # global: every value is 1 - lam (the resampled share), lam = the own share
    torch.testing.assert_close(mix.global_x, (1 - mix.global_own.float())[:, None, None, None, None].expand_as(x))
    # local: exactly the pasted cells are ones, all channels alike, and the share matches
    pasted = mix.local_x.mean(dim=(1, 2, 3, 4)).double()
    torch.testing.assert_close(1 - pasted, mix.local_own)
    assert torch.equal(mix.local_x.amin(dim=1), mix.local_x.amax(dim=1))
    # the box is about 1 - lam of the sequence (rounded to whole frames and joints)
    assert torch.allclose(mix.local_own, mix.global_own, atol=0.15)


def _tiny_glmc(tiny_data, epochs=3):
    from shapmix.engine.builders import build_pipelines, build_run_model, open_run_data

    config = tiny_config(tiny_data, epochs=epochs, extra=GLMC_EXTRA)
    data = open_run_data(config)
    model = build_run_model(config, data.dataset)
    train_pipeline, _ = build_pipelines(config, data.dataset)
    method = build_method(
        config.method, data.dataset.num_classes, data.train_counts, data.dataset.layout, config.train.seed,
        model=model, train_split=data.train, train_pipeline=train_pipeline, total_epochs=epochs,
    )
    return config, data, model, train_pipeline, method


def test_glmc_heads_and_both_classifiers_get_gradients(tiny_data):
    _, data, model, pipeline, method = _tiny_glmc(tiny_data)
    assert isinstance(method, GLMCMethod) and method.heads is not None
    network = TrainingNetwork(model, method.heads)
    batch = default_collate([data.train[i] for i in range(8)])
    x, _ = pipeline(batch.x, batch.length, torch.Generator().manual_seed(0))
    # epoch 1 of 3: both classification losses have weight (alpha = 8/9, 1 - alpha = 1/9)
    loss, logits = method.training_loss(network, x, batch.label, None, epoch=1)
    assert logits.shape == (8, TINY_CLASSES) and torch.isfinite(loss)
    loss.backward()
    for name, module in [("conventional classifier", method.heads.classifier), ("projector", method.heads.projector),
                         ("predictor", method.heads.predictor), ("re-balanced classifier", model.fc)]:
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0, name
    assert model.data_bn.weight.grad.abs().sum() > 0  # and the backbone's first layer


def test_glmc_resampled_batch_repeats_after_reseeding_an_epoch(tiny_data):
    *_, method = _tiny_glmc(tiny_data)
    first = method.resampled_batch(8, torch.device("cpu"), method.epoch_generator(2))
    method.epoch_generator(0)
    again = method.resampled_batch(8, torch.device("cpu"), method.epoch_generator(2))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_glmc_config_requires_cross_entropy(tiny_data):
    with pytest.raises(ConfigError, match="loss.name=ce"):
        tiny_config(tiny_data, extra=["method.name=glmc", "loss.name=balanced_softmax"])


@pytest.mark.slow
def test_glmc_run_trains_checkpoints_heads_and_resumes_exactly(tiny_data, tmp_path):
    config = tiny_config(tiny_data, epochs=3, extra=GLMC_EXTRA)
    full = tmp_path / "full"
    train(config, full)
    part = tmp_path / "part"
    train_interrupted_then_resumed(config, part)
    expected, resumed = load_checkpoint(full / "last.pt"), load_checkpoint(part / "last.pt")
    assert set(expected["method"]["heads"]) == {f"{layer}.{p}" for layer in ("classifier", "projector", "predictor") for p in ("weight", "bias")}
    for section in ("model", "optimizer"):
        assert_same_content(_plain(expected[section]), _plain(resumed[section]))
    for key, value in expected["method"]["heads"].items():
        assert torch.equal(value, resumed["method"]["heads"][key]), key
    # the optimiser trains the heads too: it holds state for every backbone and head parameter
    _, _, model, _, method = _tiny_glmc(tiny_data)
    assert len(expected["optimizer"]["state"]) == len(list(TrainingNetwork(model, method.heads).parameters()))
    assert (full / "metrics.json").exists()


def _plain(value):
    """Tensors as numpy arrays, so :func:`assert_same_content` compares them exactly."""
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value

