"""The engine's speed options: mixed precision, torch.compile, persistent loader workers."""

from __future__ import annotations

import pytest
import torch

from shapmix.engine.checkpoint import load_checkpoint
from shapmix.engine.builders import build_run_model
from shapmix.engine.trainer import Trainer, train

from helpers import make_tiny_dataset, tiny_config, train_interrupted_then_resumed

SHAPMIX = ["method.name=shapmix", "method.warmup_epochs=1", "method.estimate_fraction=1.0", "data.window=16"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


def _config(tiny_data, extra, epochs=2):
    return tiny_config(tiny_data, epochs=epochs, extra=[*extra, "train.threads=1", "log.plots=false"])


def _classifier_input_dtypes(trainer: Trainer) -> list[tuple[bool, torch.dtype]]:
    """Record ``(training mode, dtype)`` of every input the classifier sees from now on."""
    seen: list[tuple[bool, torch.dtype]] = []
    trainer.model.fc.register_forward_hook(lambda module, inputs, output: seen.append((module.training, output.dtype)))
    return seen


@pytest.mark.slow
def test_bf16_runs_training_estimation_and_evaluation_under_autocast(tiny_data, tmp_path):
    trainer = Trainer(_config(tiny_data, [*SHAPMIX, "train.precision=bf16"]), tmp_path / "bf16")
    seen = _classifier_input_dtypes(trainer)
    result = trainer.fit()
    trainer.close()
    modes = {training for training, _ in seen}
    assert modes == {True, False}  # training steps, and eval-mode Shapley estimation and testing
    assert {dtype for _, dtype in seen} == {torch.bfloat16}
    assert not trainer.scaler.is_enabled()  # bf16 keeps fp32's range: no loss scaling
    table = trainer.method.table
    assert table.values.dtype == torch.float32 and torch.isfinite(table.values).all() and table.counts.sum() > 0
    history = [record["loss"] for record in trainer.history]
    assert all(torch.isfinite(torch.tensor(history)))
    assert 0 <= result["test"]["top1"] <= 100


def test_fp32_runs_without_autocast(tiny_data, tmp_path):
    trainer = Trainer(_config(tiny_data, [], epochs=1), tmp_path / "fp32")
    seen = _classifier_input_dtypes(trainer)
    trainer.fit()
    trainer.close()
    assert {dtype for _, dtype in seen} == {torch.float32}


@pytest.mark.slow
def test_fp16_scales_the_loss_and_resumes_with_the_scaler(tiny_data, tmp_path):
    config = _config(tiny_data, ["train.precision=fp16"])
    train(config, tmp_path / "full")
    saved = load_checkpoint(tmp_path / "full" / "last.pt")["scaler"]
    assert saved["scale"] > 1.0  # the loss was scaled (starting at 2**16, backed off on overflow)

    train_interrupted_then_resumed(config, tmp_path / "part")
    full, part = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "part" / "last.pt")
    assert part["scaler"] == full["scaler"]
    for key, value in full["model"].items():
        assert torch.equal(value, part["model"][key]), key


def test_precision_is_validated(tiny_data):
    with pytest.raises(ValueError, match="precision"):
        _config(tiny_data, ["train.precision=fp8"])


@pytest.mark.slow
def test_loader_workers_persist_and_give_the_same_run_as_the_main_process(tiny_data, tmp_path):
    plain = tmp_path / "plain"
    train(_config(tiny_data, ["method.name=stmix"]), plain)
    trainer = Trainer(_config(tiny_data, ["method.name=stmix", "data.num_workers=2"]), tmp_path / "workers")
    assert trainer.train_loader.persistent_workers and trainer.train_loader.prefetch_factor == 2
    trainer.fit()
    trainer.close()
    expected, got = load_checkpoint(plain / "last.pt"), load_checkpoint(tmp_path / "workers" / "last.pt")
    for key, value in expected["model"].items():
        assert torch.equal(value, got["model"][key]), key


def _compiler_available() -> str | None:
    """Why ``torch.compile`` cannot run here, or ``None`` when it can."""
    try:
        compiled = torch.compile(lambda x: torch.sin(x) + 1)
        compiled(torch.zeros(2))
    except Exception as error:  # no C++ compiler, unsupported platform or Python version
        return f"torch.compile is unavailable here: {type(error).__name__}: {error}"
    return None


@pytest.mark.slow
def test_compiled_model_computes_the_eager_logits_and_keeps_its_checkpoint_keys(tiny_data, tmp_path):
    reason = _compiler_available()
    if reason:
        pytest.skip(reason)
    trainer = Trainer(_config(tiny_data, ["method.name=none", "train.compile=true"], epochs=1), tmp_path / "compiled")
    trainer.close()
    model = trainer.model
    assert model._compiled_call_impl is not None  # compiled in place: every call runs the compiled code
    x = torch.randn(4, 3, 8, 25, 2, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward(x), rtol=1e-4, atol=1e-5)  # compiled vs eager forward
    # The checkpoint a compiled run writes loads into an uncompiled model (no "_orig_mod." keys).
    assert trainer.state_dict(0)["model"].keys() == build_run_model(trainer.config, trainer.data.dataset).state_dict().keys()
    # Training is not compared with an eager run step by step: ReLU zeros tie inside the max-pool
    # branch of the temporal convolution, and the compiled backward breaks those ties differently
    # (an equally valid gradient), so the runs drift apart.
