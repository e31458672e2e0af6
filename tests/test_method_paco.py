"""PaCo (Cui et al., ICCV 2021): its loss, learnable centres, key queue, momentum encoder, every
backbone, exact resume and the queue under DDP."""

from __future__ import annotations

import math
import os
import signal

import numpy as np
import pytest
import torch
from helpers import (
    assert_same_state,
    make_tiny_dataset,
    tiny_config,
)
from torch.utils.data import default_collate

from shapmix.config import ConfigError
from shapmix.engine.checkpoint import load_checkpoint
from shapmix.engine.preemption import TrainingInterrupted
from shapmix.engine.trainer import Trainer, train
from shapmix.methods import PaCoMethod, TrainingNetwork, build_method
from shapmix.methods.paco import KeyQueue, paco_loss

PACO = ["method.name=paco", "loss.name=ce", "train.threads=1", "log.plots=false"]
BACKBONES = ["ctrgcn", "stgcnpp", "agcn", "infogcn", "hdgcn"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny backbones run faster on one thread, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("paco_data") / "tiny")


def _tiny_paco(tiny_data, extra=()):
    """The model, a training batch of 8 (augmented) and a PaCo method built as the trainer does."""
    from shapmix.engine.builders import build_pipelines, build_run_model, open_run_data

    torch.manual_seed(0)
    config = tiny_config(tiny_data, epochs=2, extra=[*PACO, *extra])
    data = open_run_data(config)
    model = build_run_model(config, data.dataset)
    train_pipeline, _ = build_pipelines(config, data.dataset)
    method = build_method(
        config.method, data.dataset.num_classes, data.train_counts, data.dataset.layout, config.train.seed,
        model=model, train_split=data.train, train_pipeline=train_pipeline, total_epochs=2,
    )
    batch = default_collate([data.train[i] for i in range(0, 24, 3)])  # every class
    x, _ = train_pipeline(batch.x, batch.length, torch.Generator().manual_seed(0))
    return model, method, x, batch.label, data.train_counts


def _loop_paco_loss(q, k, queue, y, queue_y, z, counts, alpha, beta, gamma, temperature):
    """PaCo's loss written out term by term (Cui et al. 2021, eq. 6, with the official code's
    log-prior on the centre logits and gamma on the samples)."""
    samples = torch.cat([q, k, queue]).double()
    sample_y = torch.cat([y, y, queue_y]).tolist()
    prior = (counts / counts.sum()).tolist()
    total = 0.0
    for i in range(len(q)):
        centre = [float(z[i, c]) + math.log(prior[c]) for c in range(z.shape[1])]
        sample = {j: float(q[i].double() @ samples[j]) / temperature for j in range(len(samples)) if j != i}
        denominator = sum(math.exp(v) for v in centre) + gamma * sum(math.exp(v) for v in sample.values())
        positives = [j for j in sample if sample_y[j] == int(y[i])]
        log_z = math.log(denominator)
        weighted = beta * (centre[int(y[i])] - log_z) + alpha * sum(sample[j] - log_z for j in positives)
        total += -weighted / (beta + alpha * len(positives))
    return total / len(q)


def test_paco_loss_is_the_term_by_term_formula():
    generator = torch.Generator().manual_seed(0)
    batch, queue_size, dim, classes = 5, 7, 4, 3
    q, k, queue = (
        torch.nn.functional.normalize(torch.randn(rows, dim, generator=generator), dim=1)
        for rows in (batch, batch, queue_size)
    )
    y = torch.tensor([0, 1, 0, 2, 0])
    queue_y = torch.tensor([2, 2, 0, 1, 1, 0, 2])
    z = torch.randn(batch, classes, generator=generator)
    counts = torch.tensor([10.0, 4.0, 1.0])
    log_prior = (counts / counts.sum()).log()
    for alpha, beta, gamma, temperature in [(0.01, 1.0, 1.0, 0.05), (0.5, 2.0, 0.3, 0.2), (1.0, 0.0, 1.0, 1.0)]:
        loss = paco_loss(q, k, queue, y, queue_y, z, log_prior, alpha, beta, gamma, temperature)
        expected = _loop_paco_loss(q, k, queue, y, queue_y, z, counts, alpha, beta, gamma, temperature)
        assert loss.item() == pytest.approx(expected, rel=1e-5), (alpha, beta, gamma, temperature)


def test_centres_receive_gradient_and_the_momentum_encoder_does_not(tiny_data):
    model, method, x, y, _ = _tiny_paco(tiny_data)
    assert isinstance(method, PaCoMethod)
    loss, logits = method.training_loss(TrainingNetwork(model, method.heads), x, y, None, epoch=0)
    assert logits.shape == (8, 4) and torch.isfinite(loss)
    loss.backward()
    # the class centres are the backbone's classifier: trained through the contrastive softmax
    assert model.fc.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.heads.parameters())
    assert all(not p.requires_grad and p.grad is None for p in method.key_encoder.parameters())
    # the key encoder is method state, outside the trained network
    trained = {id(p) for p in TrainingNetwork(model, method.heads).parameters()}
    assert not trained & {id(p) for p in method.key_encoder.parameters()}


def test_the_centre_positive_carries_the_log_prior(tiny_data):
    """With alpha = 0 only the centre term is a positive: a larger prior of the true class makes
    its adjusted logit larger, the loss smaller."""
    generator = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(2, 4, generator=generator), dim=1)
    z, y = torch.zeros(2, 2), torch.tensor([0, 0])
    queue, queue_y = q.clone(), torch.tensor([1, 1])
    balanced = paco_loss(q, q, queue, y, queue_y, z, torch.tensor([0.5, 0.5]).log(), 0.0, 1.0, 1.0, 0.1)
    head = paco_loss(q, q, queue, y, queue_y, z, torch.tensor([0.9, 0.1]).log(), 0.0, 1.0, 1.0, 0.1)
    assert head < balanced


def test_the_queue_rolls_with_the_batchs_momentum_keys(tiny_data):
    model, method, x, y, _ = _tiny_paco(tiny_data, ["method.paco_queue_size=12"])
    network = TrainingNetwork(model, method.heads)
    captured = []
    method.key_encoder.register_forward_hook(lambda module, inputs, output: captured.append(output[1].detach().clone()))
    start = method.queue.state_dict()
    assert int(start["pointer"]) == 0
    method.training_loss(network, x, y, None, epoch=0)
    queue = method.queue
    assert int(queue.pointer) == 8
    torch.testing.assert_close(queue.keys[:8], captured[0])
    assert torch.equal(queue.labels[:8], y)
    assert torch.equal(queue.keys[8:], start["keys"][8:]) and torch.equal(queue.labels[8:], start["labels"][8:])
    # the next batch wraps around: the 4 oldest at the end, then the 4 at the start
    second_y = y.roll(1)
    method.training_loss(network, x, second_y, None, epoch=0)
    assert int(queue.pointer) == 4
    torch.testing.assert_close(torch.cat([queue.keys[8:], queue.keys[:4]]), captured[1])
    assert torch.equal(torch.cat([queue.labels[8:], queue.labels[:4]]), second_y)
    torch.testing.assert_close(queue.keys[4:8], captured[0][4:])


def test_a_queue_smaller_than_the_global_batch_is_refused():
    queue = KeyQueue(4, 3, 2)
    with pytest.raises(ValueError, match="paco_queue_size to at least 8"):
        queue.push(torch.zeros(8, 3), torch.zeros(8, dtype=torch.long))


def test_the_momentum_encoder_moves_by_the_stated_momentum(tiny_data):
    momentum = 0.9
    model, method, x, y, _ = _tiny_paco(tiny_data, [f"method.paco_momentum={momentum}"])
    network = TrainingNetwork(model, method.heads)
    optimiser = torch.optim.SGD(network.parameters(), lr=0.5)
    loss, _ = method.training_loss(network, x, y, None, epoch=0)
    loss.backward()
    optimiser.step()  # the query side moves away from the key encoder
    keys_before = [p.detach().clone() for p in method.key_encoder.parameters()]
    queries = [p.detach().clone() for p in network.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(keys_before, queries))
    method.training_loss(network, x, y, None, epoch=0)
    for before, query, after in zip(keys_before, queries, method.key_encoder.parameters()):
        torch.testing.assert_close(after, momentum * before + (1 - momentum) * query)


def test_paco_requires_cross_entropy_and_a_positive_weight(tiny_data):
    with pytest.raises(ConfigError, match="loss.name=ce"):
        tiny_config(tiny_data, extra=["method.name=paco", "loss.name=balanced_softmax"])
    with pytest.raises(ValueError, match="positive alpha or beta"):
        _tiny_paco(tiny_data, ["method.paco_alpha=0", "method.paco_beta=0"])


@pytest.mark.parametrize("name", BACKBONES)
def test_one_paco_step_on_every_backbone(tiny_data, tmp_path, name):
    # one batch of 16 of the 28 training samples: a single optimiser step, then evaluation
    config = tiny_config(tiny_data, epochs=1, extra=[f"model.name={name}", "train.batch_size=16", *PACO])
    result = train(config, tmp_path / "run")
    assert np.isfinite(result["test"]["top1"])
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert np.isfinite(state["history"][0]["loss"])
    assert int(state["method"]["queue"]["pointer"]) == 16
    assert set(state["method"]["key_encoder"]) >= {f"backbone.{key}" for key in state["model"]}


@pytest.mark.slow
def test_paco_stopped_by_a_signal_mid_epoch_resumes_exactly(tiny_data, tmp_path):
    """SIGTERM during global step 4 (epoch 2, step 2 of 3): the mid-epoch checkpoint holds the
    queue, the key encoder and the position of the epoch's view rotations."""
    config = tiny_config(tiny_data, epochs=2, extra=[*PACO, "method.paco_queue_size=20", "method.paco_momentum=0.9"])
    train(config, tmp_path / "full")
    stopped = tmp_path / "stopped"
    trainer = Trainer(config, stopped)
    before_step = trainer.method.before_step

    def signalling(model, x, y, epoch, step):
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return before_step(model, x, y, epoch, step)

    trainer.method.before_step = signalling
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    trainer.close()
    in_epoch = load_checkpoint(stopped / "last.pt")["in_epoch"]
    assert (in_epoch["epoch"], in_epoch["step"]) == (1, 2)
    assert int(in_epoch["ranks"][0]["method"]["queue"]["pointer"]) == 0  # 5 steps of 8 in a queue of 20
    train(config, stopped, resume=True)
    expected, resumed = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(stopped / "last.pt")
    for section in ("model", "method"):
        assert_same_state(expected[section], resumed[section], section)

