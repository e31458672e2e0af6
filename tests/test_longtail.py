import numpy as np
import pytest

from shapmix.data.longtail import longtail_counts, make_longtail_split, sample_per_class


def test_exponential_matches_lt_ntu_formula():
    counts = longtail_counts(60, 600, 100)
    assert counts[0] == 600 and counts[-1] == 6
    assert all(counts[c] == int(600 * (1 / 100) ** (c / 59)) for c in range(60))
    assert (np.diff(counts) <= 0).all()


@pytest.mark.parametrize("profile", ["exponential", "pareto", "step"])
def test_profiles_span_the_imbalance_factor(profile):
    counts = longtail_counts(20, 200, 10, profile)
    assert counts[0] == 200 and counts[-1] == 20
    assert (np.diff(counts) <= 0).all()
    if profile == "step":
        assert set(counts.tolist()) == {200, 20}


def test_split_is_seeded_and_follows_class_order():
    labels = np.repeat(np.arange(5), 50)
    a = make_longtail_split(labels, 5, 40, 10, seed=3)
    b = make_longtail_split(labels, 5, 40, 10, seed=3)
    c = make_longtail_split(labels, 5, 40, 10, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(labels[a], minlength=5).tolist() == longtail_counts(5, 40, 10).tolist()
    order = [4, 3, 2, 1, 0]
    d = make_longtail_split(labels, 5, 40, 10, seed=3, class_order=order)
    assert np.bincount(labels[d], minlength=5).tolist() == longtail_counts(5, 40, 10).tolist()[::-1]


def test_short_classes_keep_everything_or_fail_when_strict():
    labels = np.array([0] * 3 + [1] * 10)
    assert len(sample_per_class(labels, [5, 5], seed=0)) == 8
    with pytest.raises(ValueError, match="class 0 has 3"):
        sample_per_class(labels, [5, 5], seed=0, strict=True)
