"""Layers shared by recbole-biao's models: masked attention pooling, history encoding, a logit bias, a cheaper
dropout."""

from typing import Tuple

import torch
import torch.nn as nn

__all__ = ["masked_softmax", "history_mask", "on_gpu", "distinct_items", "candidate_products",
           "PRODUCT_SCORES_PER_CALL", "AttentionPooling", "Bias", "WordDropout"]


def history_mask(items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` bool, True at the first ``lengths`` positions (the valid history items)."""
    return torch.arange(items.shape[1], device=items.device)[None, :] < lengths[:, None]


def on_gpu(device: torch.device) -> bool:
    """Whether the perceptron's inputs and attention take their GPU paths (one place for that decision; a
    function, so that the tests can run those paths on the CPU)."""
    return device.type == "cuda"


def distinct_items(items: torch.Tensor, vocabulary: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(table, index)`` with ``table[index] == items``: the distinct IDs (sorted) among ``items`` of an ID
    space of size ``vocabulary``, and where each item is among them. A vocabulary not much larger than
    ``items`` is marked and counted (linear) instead of sorted as ``torch.unique`` does: measured 9x faster on
    the perceptron's 512 x 50 histories over ML-1M's items. On a GPU the table is every position of ``items``,
    not deduplicated: finding the distinct ones would wait for the GPU, projecting all of them is cheap there."""
    if on_gpu(items.device):
        return items.reshape(-1), torch.arange(items.numel(), device=items.device).view(items.shape)
    if vocabulary > 4 * items.numel():
        return torch.unique(items, return_inverse=True)
    seen = torch.zeros(vocabulary, dtype=torch.bool, device=items.device)
    seen[items] = True
    position = torch.cumsum(seen, 0) - 1
    return torch.nonzero(seen).squeeze(1), position[items]


# query x candidate scores a full sort asks for at once from a model whose candidate_scores is one
# candidate_products: 32 MB of float scores
PRODUCT_SCORES_PER_CALL = 1 << 23


def candidate_products(user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
    """``[B, C]`` dot products of ``[B, d]`` users with ``[C, d]`` candidates shared by every row or ``[B, C, d]``
    per row, as one matrix product (broadcasting builds ``[B, C, d]`` first: 57 s of a full sort on Movies ->
    Books' 39,000 items)."""
    return user @ item.T if item.dim() == 2 else torch.einsum("bd,bcd->bc", user, item)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim where ``mask`` is True; padding gets weight 0 and a row without any
    valid position gets all zeros (never NaN)."""
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.masked_fill(~mask.any(-1, keepdim=True), 0.0), dim=-1)
    return weights * mask.to(weights.dtype)


class AttentionPooling(nn.Module):
    """``sum_i a_i h_i`` with ``a = masked_softmax(w2^T relu(W1 [h_i; q; h_i * q] + b1))`` for a query ``q``
    (the candidate item), as in MiNet's item-level attention and DIN.

    Args:
        dim (int): size of ``h_i`` and ``q``; hidden (int): size of the scoring layer.
    """

    def __init__(self, dim, hidden):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(3 * dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, history: torch.Tensor, query: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """history ``[B, N, D]``, query ``[B, D]``, mask ``[B, N]`` -> (pooled ``[B, D]``, weights ``[B, N]``)."""
        q = query[:, None, :].expand_as(history)
        weights = masked_softmax(self.score(torch.cat([history, q, history * q], -1)).squeeze(-1), mask)
        return (weights[..., None] * history).sum(1), weights


class Bias(nn.Module):
    """``x + b`` with one learned scalar ``b`` (zero at the start): the global bias of a domain's logits, the
    prediction head of the factorisation models (a dot product has no layer of its own to serve as one)."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class WordDropout(nn.Dropout):
    """:class:`torch.nn.Dropout` (an element kept with probability ``1 - p``, scaled by ``1 / (1 - p)``) with a
    cheaper mask: each element's draw is a 16-bit slice of a random 64-bit word, kept below ``round((1 - p)
    2^16)``, so the keep probability is within ``2^-17`` of ``1 - p``. torch's CPU dropout draws one double per
    element: 45 ms for BiTGCF's 78,000 x 64 node table on Movies -> Books, a third of its training step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        # three slices a word: int64's random_ draws from [0, 2^63), so the fourth slice's top bit is always 0
        words = torch.empty(-(-x.numel() // 3), dtype=torch.int64, device=x.device).random_()
        draws = words.view(torch.int16).view(-1, 4)[:, :3].reshape(-1)[:x.numel()].view_as(x)
        keep = draws < round((1.0 - self.p) * 65536) - 32768
        return x * keep / (1.0 - self.p)
