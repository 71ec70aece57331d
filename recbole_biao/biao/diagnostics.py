"""Measures of whether BIAO's upper level learns: the spread and effective sample size of the weights, the
correlation of the perceptron's scores with those of its untrained copy, and how far its parameters moved.

A weight vector here is the normalised weights of one set of source behaviours (they sum to gamma); every
measure is scale-free, so gamma does not enter.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

__all__ = ["effective_sample_size", "weight_spread", "score_correlation", "parameter_distance", "MOVED_BELOW",
           "NEAR_UNIFORM_SPREAD"]

# the perceptron counts as moved once its scores correlate below this with its initial copy's
MOVED_BELOW = 0.99
# weights whose spread (std of weight x n) stays below this differ from uniform by a few per cent at most: the
# scores may have moved (a near-constant score correlates with anything) without changing what the model trains on
NEAR_UNIFORM_SPREAD = 0.05


def effective_sample_size(weights: torch.Tensor) -> float:
    """``(sum w)^2 / (n * sum w^2)``: 1 for uniform weights, 1/n when one behaviour holds all the weight."""
    w = weights.detach().double().flatten()
    denominator = len(w) * float((w * w).sum())
    return float(w.sum()) ** 2 / denominator if denominator > 0 else float("nan")


def weight_spread(weights: torch.Tensor) -> float:
    """Standard deviation of ``weights * n / sum(weights)``: 0 for uniform weights (the Base model)."""
    w = weights.detach().double().flatten()
    total = float(w.sum())
    if total <= 0 or len(w) < 2:
        return float("nan")
    return float((w * len(w) / total).std(unbiased=False))


def score_correlation(scores: torch.Tensor, initial: torch.Tensor) -> float:
    """Pearson correlation of two score vectors; nan if either is constant (e.g. ``gamma_only``)."""
    a, b = scores.detach().double().flatten(), initial.detach().double().flatten()
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / denominator if denominator > 0 else float("nan")


def parameter_distance(params: Iterable[torch.Tensor], reference: Iterable[torch.Tensor]) -> float:
    """``||params - reference|| / ||reference||`` over all tensors together."""
    diff, norm = 0.0, 0.0
    for p, r in zip(params, reference):
        diff += float(((p.detach() - r.detach()) ** 2).sum())
        norm += float((r.detach() ** 2).sum())
    return math.sqrt(diff / norm) if norm > 0 else float("nan")
