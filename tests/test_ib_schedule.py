"""The influence-balanced loss lowers the learning rate when it starts, as its reference code does."""

from __future__ import annotations

import pytest
from helpers import make_tiny_dataset, tiny_overrides

from shapmix.config import LossConfig, load_config
from shapmix.engine.trainer import Trainer, lr_factor, train
from shapmix.losses import build_loss

COUNTS = [12, 8, 5, 3]


def test_ib_loss_states_the_reference_lr_drop_from_its_start_epoch():
    assert LossConfig().ib_lr_factor == 0.01  # Park et al. ICCV 2021, official code: lr x 0.01
    loss = build_loss(LossConfig(name="influence_balanced", ib_start_epoch=3), COUNTS, total_epochs=6)
    assert [loss.lr_multiplier(epoch) for epoch in range(6)] == [1.0, 1.0, 1.0, 0.01, 0.01, 0.01]
    custom = build_loss(LossConfig(name="influence_balanced", ib_lr_factor=0.1), COUNTS, total_epochs=6)
    assert [custom.lr_multiplier(epoch) for epoch in (2, 3)] == [1.0, 0.1]  # null start: half the schedule
    # other losses leave the schedule alone, also behind deferred re-weighting
    for config in (LossConfig(), LossConfig(name="ldam", drw_epoch=2), LossConfig(name="balanced_softmax")):
        assert {build_loss(config, COUNTS, 6).lr_multiplier(epoch) for epoch in range(6)} == {1.0}


def test_bad_ib_lr_factor_is_a_config_error():
    with pytest.raises(ValueError, match="ib_lr_factor"):
        load_config(None, ["loss.ib_lr_factor=0"])


def test_trainer_scales_the_whole_schedule_from_the_ib_start_epoch(tmp_path):
    data = make_tiny_dataset(tmp_path / "data")
    config = load_config(
        None,
        tiny_overrides(data, epochs=3)
        + ["schedule.milestones=[2]", "loss.name=influence_balanced", "loss.ib_start_epoch=1",
           "method.name=none", "log.plots=false", "train.threads=1"],
    )
    seen_lr: list[float] = []
    train(config, tmp_path / "run", callbacks=[lambda trainer, epoch, record: seen_lr.append(
        trainer.optimizer.param_groups[0]["lr"])])
    trainer = Trainer(config, tmp_path / "inspect")
    try:
        steps = trainer.steps_per_epoch
        for step in range(3 * steps):
            scheduled = lr_factor(step, steps, config.schedule, config.optim.lr)
            expected = scheduled * (0.01 if step // steps >= 1 else 1.0)
            assert trainer.scheduler.lr_lambdas[0](step) == pytest.approx(expected)
    finally:
        trainer.close()
    # after epoch e the optimiser holds the rate of the first step of epoch e + 1:
    # epoch 1 (IB, before the milestone) 0.1 x 0.01, epoch 2 (IB, after the milestone) 0.1 x 0.1 x 0.01
    assert seen_lr[:2] == pytest.approx([0.1 * 0.01, 0.1 * 0.1 * 0.01])
