import numpy as np
import pytest

from shapmix.data.longtail import Group, group_classes
from shapmix.engine.evaluate import compute_metrics, format_metrics_table


def _one_hot_scores(pred, k):
    scores = np.zeros((len(pred), k), dtype=np.float32)
    scores[np.arange(len(pred)), pred] = 1
    return scores


def test_group_thresholds_are_strict():
    groups = group_classes([101, 100, 20, 19, 0])
    assert groups.tolist() == [Group.MANY, Group.MEDIUM, Group.MEDIUM, Group.FEW, Group.FEW]


def test_metrics_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 0, 1, 0, 0, 0, 0, 2])
    m = compute_metrics(_one_hot_scores(pred, 3), labels, train_counts=[500, 50, 5])
    assert m.top1 == 50.0
    assert m.per_class == [100.0, 50.0, 25.0]
    assert m.class_mean == (100 + 50 + 25) / 3
    assert (m.many, m.medium, m.few) == (100.0, 50.0, 25.0)
    assert m.confusion.tolist() == [[2, 0, 0], [1, 1, 0], [3, 0, 1]]
    assert m.group_sizes == {"many": 1, "medium": 1, "few": 1}


def test_empty_group_is_none_and_printed_na():
    labels = np.array([0, 1])
    m = compute_metrics(_one_hot_scores(np.array([0, 0]), 2), labels, train_counts=[50, 40])
    assert m.many is None and m.few is None and m.medium == 50.0
    table = format_metrics_table(m)
    assert "n/a" in table and "many(0)" in table


def test_top5_counts_any_of_five_best():
    k = 8
    scores = np.tile(np.arange(k, dtype=np.float32)[::-1], (3, 1))  # ranking 0 > 1 > ... > 7
    m = compute_metrics(scores, np.array([0, 4, 5]), train_counts=[10] * k)
    assert m.top1 == pytest.approx(100 / 3)
    assert m.top5 == pytest.approx(200 / 3)
