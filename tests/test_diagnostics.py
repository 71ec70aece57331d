"""The upper level's diagnostics against values computed by hand."""

import math

import pytest
import torch

from recbole_biao.biao.diagnostics import (effective_sample_size, parameter_distance, score_correlation,
                                              weight_spread)


def test_effective_sample_size_by_hand():
    # (1 + 1 + 2)^2 / (3 * (1 + 1 + 4)) = 16 / 18
    assert effective_sample_size(torch.tensor([1.0, 1.0, 2.0])) == pytest.approx(16 / 18)
    assert effective_sample_size(torch.full((7,), 0.3)) == pytest.approx(1.0)
    assert effective_sample_size(torch.tensor([0.0, 0.0, 5.0, 0.0])) == pytest.approx(0.25)  # one row holds all
    # scale-free: gamma does not enter
    w = torch.tensor([0.1, 0.5, 0.2, 0.9])
    assert effective_sample_size(3.7 * w) == pytest.approx(effective_sample_size(w))


def test_weight_spread_by_hand():
    # weights 1, 1, 2 -> times n / sum = 0.75, 0.75, 1.5; mean 1; population std sqrt((2 * 0.0625 + 0.25) / 3)
    assert weight_spread(torch.tensor([1.0, 1.0, 2.0])) == pytest.approx(math.sqrt(0.375 / 3))
    assert weight_spread(torch.full((5,), 0.2)) == pytest.approx(0.0)


def test_score_correlation_by_hand():
    a, b = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([2.0, 1.0, 4.0, 3.0])
    # centred: (-1.5, -0.5, 0.5, 1.5) . (-0.5, -1.5, 1.5, 0.5) = 0.75 + 0.75 + 0.75 + 0.75 = 3; norms^2 = 5 and 5
    assert score_correlation(a, b) == pytest.approx(3 / 5)
    assert score_correlation(a, -2 * a + 7) == pytest.approx(-1.0)
    assert math.isnan(score_correlation(torch.zeros(4), a))  # uniform scores (gamma_only) have no correlation


def test_parameter_distance_by_hand():
    before = [torch.tensor([3.0, 0.0]), torch.tensor([4.0])]  # norm 5
    after = [torch.tensor([3.0, 1.0]), torch.tensor([4.0 + 2.0])]  # difference (0, 1, 2): norm sqrt(5)
    assert parameter_distance(after, before) == pytest.approx(math.sqrt(5) / 5)
    assert parameter_distance(before, before) == 0.0
