import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shapmix.config import LossConfig
from shapmix.losses import BalancedSoftmax, CrossEntropy, build_loss


def test_cross_entropy_soft_equals_hard_for_one_hot():
    logits = torch.randn(8, 5)
    y = torch.randint(0, 5, (8,))
    loss = CrossEntropy()
    torch.testing.assert_close(loss(logits, F.one_hot(y, 5).float()), F.cross_entropy(logits, y))


def test_soft_target_is_convex_combination():
    logits = torch.randn(6, 4)
    a, b = torch.randint(0, 4, (6,)), torch.randint(0, 4, (6,))
    lam = 0.3
    soft = (1 - lam) * F.one_hot(a, 4).float() + lam * F.one_hot(b, 4).float()
    expected = (1 - lam) * F.cross_entropy(logits, a) + lam * F.cross_entropy(logits, b)
    torch.testing.assert_close(CrossEntropy()(logits, soft), expected)


def test_balanced_softmax_adds_log_prior():
    counts = np.array([100, 10, 1])
    logits = torch.randn(7, 3)
    y = torch.randint(0, 3, (7,))
    prior = torch.tensor(counts / counts.sum(), dtype=torch.float32)
    expected = F.cross_entropy(logits + prior.log(), y)
    torch.testing.assert_close(BalancedSoftmax(counts)(logits, y), expected)
    # tau scales the adjustment; tau=0 is plain cross entropy
    torch.testing.assert_close(BalancedSoftmax(counts, tau=0.0)(logits, y), F.cross_entropy(logits, y))


def test_balanced_softmax_penalises_head_predictions_more():
    counts = [1000, 10]
    logits = torch.zeros(1, 2)
    head = BalancedSoftmax(counts)(logits, torch.tensor([0]))
    tail = BalancedSoftmax(counts)(logits, torch.tensor([1]))
    assert tail > head  # the tail class needs a larger margin


def test_empty_class_keeps_loss_finite_and_bad_shapes_fail():
    loss = BalancedSoftmax([5, 0, 3])
    assert torch.isfinite(loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 1])))
    with pytest.raises(ValueError, match="do not match"):
        CrossEntropy()(torch.randn(4, 3), torch.rand(4, 2))
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss(LossConfig.model_construct(name="nope"), [1, 2], total_epochs=1)
