"""benchmarks.timing: the paired ratio of two interleaved series and its interval."""

import numpy as np
import pytest

from benchmarks import timing


def test_paired_ratio_of_proportional_series_is_exact():
    base = np.array([3.0, 5.0, 4.0, 7.0, 6.0])
    assert timing.paired_ratio(0.8 * base, base) == pytest.approx((0.8, 0.8, 0.8))


def test_paired_ratio_interval_brackets_the_median_of_noisy_ratios():
    rng = np.random.default_rng(1)
    base = rng.uniform(1.0, 2.0, size=31)
    ratios = 1.0 + rng.normal(0.0, 0.05, size=31)
    median, low, high = timing.paired_ratio(ratios * base, base)
    assert np.isclose(median, np.median(ratios))
    assert low < median < high
    # The interval of a median over 31 rounds is narrower than the spread of the rounds.
    assert low > np.quantile(ratios, 0.05) and high < np.quantile(ratios, 0.95)


def test_verdict_not_slower_fails_only_when_measurably_slower():
    assert timing.verdict_not_slower(0.97) == "ok"
    assert timing.verdict_not_slower(1.0) == "ok"
    assert timing.verdict_not_slower(1.03) == "MISSED"
