"""Long-tailed mixing baselines: Remix's label rule and GLMC's losses, heads and training run."""

from __future__ import annotations

import pytest
import torch

from shapmix.config import load_config
from shapmix.engine.methods import build_method
from shapmix.mixing import Remix, remix_label_ratio

from helpers import TINY_CLASSES, make_tiny_dataset, tiny_config

KAPPA, TAU = 3.0, 0.5


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
