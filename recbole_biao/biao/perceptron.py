"""The behavioural perceptron of BIAO (Chen et al., WWW 2023, section 3.2).

For a source behaviour (u, s_j) with E_j = [ID; category] embedding of s_j (the CDR model's tables,
gradients stopped):

- global weight ``g1 = MLP_G(E_j)`` (a linear layer);
- user weight: each of the user's recent positive items of the source and of the target domain is
  concatenated with E_j; one multi-head self-attention per domain, masked mean pooling -> m_s, m_t;
  ``g2 = MLP_L([m_s; m_t])``;
- weights ``w = gamma * norm(g1 * g2)`` over the source behaviours of the batch, gamma = relu(p) learnable.

The source loss term of the lower level is then ``sum_j w_j * loss_j``; with the softmax norm and uniform
scores this is ``gamma`` times the mean source loss, i.e. the Base model's joint loss.
"""

import contextlib
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.layers import MLPLayers

from recbole_biao.errors import ConfigError
from recbole_biao.biao import native
from recbole_biao.model.layers import on_gpu

__all__ = ["PooledSelfAttention", "pool_jointly", "BehaviouralPerceptron"]


class PooledSelfAttention(nn.Module):
    """Multi-head self-attention over ``x_i = [h_i; e]`` followed by masked mean pooling over valid positions.

    ``h_i`` are history item embeddings, ``e`` the candidate item's embedding (the same for every position
    of a row). The result equals ``masked_mean(nn.MultiheadAttention(x, x, x, key_padding_mask=~mask))``
    with this module's ``nn.MultiheadAttention`` parameters, computed with less work:

    - the projections are linear, so ``W x_i = W_h h_i + W_e e``: ``W_h`` is applied once per distinct
      history item (``table``) and gathered by ``index``, ``W_e`` once per row;
    - the key's row term ``W_k e + b_k`` adds the same amount to all scores of a query, which the softmax
      ignores: keys are ``W_k,h h_j`` alone;
    - the mean over the valid queries of ``sum_j a_ij v_j`` is ``sum_j abar_j v_j`` with ``abar`` the mean
      of the attention rows (its column sums), and ``sum_j abar_j = 1`` lets the value's row term
      ``W_v e + b_v`` be added after the pooling: without autograd values are never gathered per position
      (an ``embedding_bag`` weighted by ``abar`` reads them from the per-item table; under autograd on a CPU
      a gather and one product, whose backward is cheaper), and the output projection runs once per row;
    - rows are grouped by how far their valid positions reach, rounded up to :attr:`LENGTH_STEP`, and each
      group is cut there, so padding costs (almost) nothing; rows whose positions are all valid up to the
      cut need no mask. A row without valid positions pools to zeros.

    On a CPU without autograd (the lower-step pass) the attention after the projections is native code
    (:mod:`recbole_biao.biao.native`: one fused loop per row and head over its valid positions only), when a
    C++ compiler was found; the torch formulation above is the reference, the path under autograd and without
    a compiler. On a GPU (launch-bound) every row goes through one segment and, without autograd, torch's fused
    attention. :func:`pool_jointly` computes several such modules (the perceptron's two domains) at once.

    Args:
        dim (int): size of ``x_i``; heads (int): number of heads (must divide ``dim``).
    """

    LENGTH_STEP = 16  # measured: a softmax over rows of 50 costs as much as over rows of 64 (vector width)

    def __init__(self, dim, heads):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"properties key 'perceptron_heads': expected a divisor of the perceptron's attention "
                              f"size {dim}, got {heads}")
        self.heads = heads
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self._scratch_space = {}

    def _segments(self, mask):
        """The rows with a valid position, ordered by group, and each group's ``(begin, end, length, dense)``
        in that order: a row's group is how far its valid positions reach, in steps of :attr:`LENGTH_STEP`
        (``length``), and whether every position up to there is valid (``dense``: no mask needed)."""
        n = mask.shape[1]
        if on_gpu(mask.device):  # a GPU gains nothing from the groups and would wait for their sizes: one segment
            return torch.arange(mask.shape[0], device=mask.device), [(0, mask.shape[0], n, False)] if n else []
        count = mask.sum(1)
        reach = (mask * torch.arange(1, n + 1, device=mask.device)).amax(1) if n else count
        steps = (reach + self.LENGTH_STEP - 1) // self.LENGTH_STEP
        dense = (count == reach) & (reach == (steps * self.LENGTH_STEP).clamp(max=n))
        group = 2 * steps + dense.long()  # 0 or 1: no valid position
        sizes = torch.bincount(group, minlength=2).tolist()
        order = torch.argsort(group, stable=True)[sizes[0] + sizes[1]:]
        segments, begin = [], 0
        for g, rows in enumerate(sizes[2:], start=2):
            if rows:
                segments.append((begin, begin + rows, min(g // 2 * self.LENGTH_STEP, n), g % 2 == 1))
                begin += rows
        return order, segments

    def _scratch(self, name, shape, like):
        """A reused tensor of ``shape`` for results that do not need autograd: a fresh multi-MB tensor per
        step costs its page faults (measured: 0.4 ms of a 1.5 ms softmax)."""
        numel = math.prod(shape)
        held = self._scratch_space.get(name)
        if held is None or held.numel() < numel or held.device != like.device or held.dtype != like.dtype:
            held = self._scratch_space[name] = like.new_empty(numel + numel // 4)  # room for larger batches
        return held[:numel].view(shape)

    def forward(self, table: torch.Tensor, index: torch.Tensor, item_emb: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            table: ``[U, Dh]`` embeddings of the distinct history items; index: ``[B, N]`` rows of ``table``.
            item_emb: ``[B, De]`` the candidate's embedding; mask: ``[B, N]`` bool, True at valid positions.

        Returns:
            ``[B, Dh + De]`` the pooled attention output.
        """
        return pool_jointly([self], [(table, index, item_emb, mask)])[0]

    def _projections(self, table, item_emb):
        """Per distinct item ``(q, k, v)`` (q scaled by 1 / sqrt(head size)), per row ``(q, v)``."""
        dim, split = self.attention.embed_dim, table.shape[-1]
        weight, bias = self.attention.in_proj_weight, self.attention.in_proj_bias
        scale = (dim // self.heads) ** -0.5
        per_item = table @ weight[:, :split].T  # [U, 3 * dim]; contiguous copies below gather 4x faster
        q_item, k_item, v_item = per_item[:, :dim] * scale, per_item[:, dim:2 * dim].contiguous(), per_item[:, 2 * dim:]
        q_row = torch.addmm(bias[:dim], item_emb, weight[:dim, split:].T) * scale  # [B, dim]
        v_row = torch.addmm(bias[2 * dim:], item_emb, weight[2 * dim:, split:].T)
        return q_item, k_item, v_item, q_row, v_row


def pool_jointly(modules: Sequence[PooledSelfAttention],
                 inputs: Sequence[Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]) -> List[torch.Tensor]:
    """``[module(*x) for module, x in zip(modules, inputs)]`` for :class:`PooledSelfAttention` modules of one
    size and number of heads, computed together: the attention runs once over the rows of all inputs (the
    per-item tables side by side), which halves the number of operations for the perceptron's two domains."""
    first = modules[0]
    dim, h = first.attention.embed_dim, first.heads
    d_head = dim // h
    n = max(x[1].shape[1] for x in inputs)
    parts, offset = [], 0
    for module, (table, index, item_emb, mask) in zip(modules, inputs):
        if module.attention.embed_dim != dim or module.heads != h:
            raise ValueError("pool_jointly: the modules differ in size or heads")
        pad = n - index.shape[1]
        if pad:  # a shorter history is padded: its extra positions are invalid
            index, mask = F.pad(index, (0, pad)), F.pad(mask, (0, pad))
        if offset:  # into the tables side by side
            index = index + offset
        parts.append((index, mask) + module._projections(table, item_emb))
        offset += table.shape[0]
    index, mask, q_item, k_item, v_item, q_row, v_row = (torch.cat(t) if len(parts) > 1 else t[0] for t in zip(*parts))
    # head-major tables: row i * h + head holds item i's vector in that head, so that one gather yields the
    # [rows * h, length, head size] operands of the batched products without a transposing copy
    q_item, k_item, v_item = (t.reshape(-1, d_head) for t in (q_item, k_item, v_item))
    total = None  # the native attention where it applies (CPU, no autograd), else torch's
    if not on_gpu(index.device):
        total = native.pooled_attention(q_item, k_item, v_item, index, mask, q_row.view(-1, h, d_head), h)
    if total is None:
        total = pool_torch(first, index, mask, q_item, k_item, v_item, q_row, h, d_head)
    total = total + v_row
    outputs, begin = [], 0
    for module, (_, index, _, mask) in zip(modules, inputs):
        end = begin + index.shape[0]
        any_valid = mask.any(1, keepdim=True).to(total.dtype)
        outputs.append(module.attention.out_proj(total[begin:end]) * any_valid)
        begin = end
    return outputs


def pool_torch(first: torch.Tensor, index: torch.Tensor, mask: torch.Tensor, q_item: torch.Tensor, k_item: torch.Tensor,
               v_item: torch.Tensor, q_row: torch.Tensor, h: int, d_head: int) -> torch.Tensor:
    """``[rows, h * d_head]`` the pooled attention before the value's row term, in torch (the reference, the
    path under autograd and on a GPU): rows grouped by the reach of their valid positions, see
    :class:`PooledSelfAttention`."""
    dim = h * d_head
    order, segments = first._segments(mask)
    index, valid_all = index.index_select(0, order), mask.index_select(0, order)
    q_row = q_row.index_select(0, order).view(-1, h, 1, d_head)
    head = torch.arange(h, device=index.device)[None, :, None]
    no_grad = not torch.is_grad_enabled()  # the lower-step pass: buffers can be reused, autograd needs its own
    gpu = on_gpu(index.device)
    pooled = []
    for begin, end, length, dense in segments:
        rows = end - begin
        bag = (index[begin:end, None, :length] * h + head).reshape(-1)  # [rows * h * length]
        q = q_item.index_select(0, bag).view(rows, h, length, d_head).add_(q_row[begin:end])
        k = k_item.index_select(0, bag).view(rows, h, length, d_head)
        if not dense:
            valid = valid_all[begin:end, :length]
            # (GPU path: a row without valid positions attends to all; its output is zeroed below)
            valid = valid | ~valid.any(1, keepdim=True)
            queries = valid.to(q.dtype)
            queries = queries / queries.sum(1, keepdim=True)  # [rows, query]: the mean over the valid queries
        # a GPU is launch-bound: one fused attention kernel, then the mean of its outputs (not under autograd:
        # that kernel's backward is not deterministic)
        if gpu and no_grad:
            v = v_item.index_select(0, bag).view(rows, h, length, d_head)
            keys = None if dense else valid[:, None, None, :]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, scale=1.0)
            pooled.append((out.mean(2) if dense else (queries[:, None, None, :] @ out).squeeze(2)).reshape(rows, dim))
            continue
        q, k = q.view(rows * h, length, d_head), k.view(rows * h, length, d_head).transpose(1, 2)
        out = {"out": first._scratch("scores", (rows * h, length, length), q)} if no_grad else {}
        if dense:
            scores = torch.bmm(q, k, **out)  # [rows * h, query, key]
        else:  # the key mask as an additive bias of the product: 2x faster than masking the scores after it
            bias = torch.zeros(rows, h, 1, length, dtype=q.dtype, device=q.device)
            bias.masked_fill_(~valid[:, None, None, :], float("-inf"))
            scores = torch.baddbmm(bias.view(rows * h, 1, length), q, k, **out)
        if no_grad:
            attention = torch.ops.aten._softmax.out(scores, -1, False, out=first._scratch("attention", scores.shape, q))
        else:
            attention = torch.softmax(scores, -1)
        if dense:
            share = attention.mean(1)
        else:
            share = torch.bmm(queries.repeat_interleave(h, 0)[:, None, :], attention).squeeze(1)  # [rows * h, key]
        if no_grad or gpu:
            pooled.append(F.embedding_bag(bag.view(rows * h, length), v_item, per_sample_weights=share,
                                          mode="sum").view(rows, dim))
        else:  # under autograd on a CPU: embedding_bag's backward sorts its indices (measured 18% of the pass)
            v = v_item.index_select(0, bag).view(rows * h, length, d_head)
            pooled.append(torch.bmm(share[:, None, :], v).view(rows, dim))
    total = q_row.new_zeros(mask.shape[0], dim)
    if pooled:
        total = total.index_copy(0, order, torch.cat(pooled))
    return total


class BehaviouralPerceptron(nn.Module):
    """Predicts one weight per source behaviour of a batch.

    Args:
        item_dim (int): size of the model's ``[ID; category]`` item embedding (2 * embedding_size).
        heads (int): attention heads (default 4).
        hidden_size (list of int): hidden widths of the local MLP (default [32, 16]).
        norm (str): ``softmax`` over the batch (default) or ``sigmoid`` (divided by the batch size).
        use_global (bool), use_user (bool): the ablations "w/o global" and "w/o user" of the paper's Table 2.
        mode (str): ``full`` (per-behaviour weights) or ``gamma_only`` (uniform weights ``gamma / B``: only
            the global scale gamma is learned, an attribution control).
        score_bound (float or None): if set, scores become ``c * tanh((score - batch mean) / c)`` before the
            normalisation, so that two behaviours' weights differ by at most a factor ``exp(2c)`` under the
            softmax and it cannot collapse onto a few behaviours.
        local_bias_init (float or None): initial bias of the local MLP's output; 1.0 starts ``g2`` near 1, so
            that ``g1 * g2`` does not start where both factors are near 0 and each scales the other's gradient
            to nothing (None: the default initialisation).
        global_init_scale (float or None): scales the global layer's initial weights (its bias starts at 0), so
            that the scores start near 0 and the weights near uniform, i.e. at the Base model, instead of at a
            random ordering of the behaviours (None: the default initialisation).
        learn_attention (bool): False keeps the two attentions at their initialisation (random features of the
            user's histories that the local MLP learns to read); their pass then never needs autograd, which
            makes the upper step several times cheaper (it is most of the step's cost).
    """

    MODES = ("full", "gamma_only")

    def __init__(self, item_dim, heads=4, hidden_size=(32, 16), norm="softmax", use_global=True, use_user=True,
                 mode="full", score_bound=None, local_bias_init=None, global_init_scale=None, learn_attention=True):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"perceptron_mode: expected one of {list(self.MODES)}, got {mode!r}")
        if mode == "full" and not (use_global or use_user):
            raise ValueError("use_global and use_user cannot both be False: the perceptron would predict nothing")
        self.norm, self.mode, self.score_bound = norm, mode, score_bound
        self.use_global = use_global and mode == "full"
        self.use_user = use_user and mode == "full"
        self.global_mlp = nn.Linear(item_dim, 1) if self.use_global else None
        if self.use_global and global_init_scale is not None:
            with torch.no_grad():
                self.global_mlp.weight.mul_(float(global_init_scale))
                self.global_mlp.bias.zero_()
        if self.use_user:
            self.attention = nn.ModuleDict({d: PooledSelfAttention(2 * item_dim, heads) for d in ("source", "target")})
            self.local_mlp = nn.Sequential(MLPLayers([4 * item_dim, *hidden_size], activation="relu"),
                                           nn.Linear(hidden_size[-1] if hidden_size else 4 * item_dim, 1))
            if local_bias_init is not None:
                nn.init.constant_(self.local_mlp[-1].bias, float(local_bias_init))
            self.attention.requires_grad_(bool(learn_attention))
        self.learn_attention = bool(learn_attention)
        self.gamma_raw = nn.Parameter(torch.ones(()))

    @property
    def gamma(self) -> torch.Tensor:
        return torch.relu(self.gamma_raw)

    @property
    def needs_histories(self) -> bool:
        return self.use_user

    def scores(self, item_emb: torch.Tensor, histories: Optional[tuple]) -> torch.Tensor:
        """Unnormalised scores ``g1 * g2`` (``[B]``), independent of the batch.

        Args:
            item_emb: ``[B, D]`` embeddings E_j of the source items.
            histories: per domain (``source``, ``target``) a tuple ``(table [U, D], index [B, N], mask [B, N])``:
                the embeddings of the distinct history items, each position's row in it, and the valid positions
                (may be None when the perceptron does not use the user's histories).
        """
        score = torch.ones(item_emb.shape[0], device=item_emb.device)
        if self.mode == "gamma_only":
            return torch.zeros_like(score)
        if self.use_global:
            score = score * self.global_mlp(item_emb).squeeze(-1)
        if self.use_user:
            # a fixed attention: the native pass, no autograd graph
            with contextlib.nullcontext() if self.learn_attention else torch.no_grad():
                pooled = pool_jointly([self.attention[d] for d in ("source", "target")],
                                      [(*histories[d][:2], item_emb, histories[d][2]) for d in ("source", "target")])
            score = score * self.local_mlp(torch.cat(pooled, dim=-1)).squeeze(-1)
        return score

    def normalise(self, score: torch.Tensor) -> torch.Tensor:
        """``gamma * norm(score)`` over the batch (the last dimension: ``[batches, B]`` normalises each row);
        with ``score_bound`` c the scores first become ``c * tanh((score - batch mean) / c)`` (centred, so that
        a shift of all scores, to which the softmax is blind, can never push them into saturation)."""
        if self.score_bound:
            c = self.score_bound
            score = c * torch.tanh((score - score.mean(dim=-1, keepdim=True)) / c)
        if self.norm == "softmax":
            return self.gamma * torch.softmax(score, dim=-1)
        return self.gamma * torch.sigmoid(score) / score.shape[-1]

    def forward(self, item_emb: torch.Tensor, histories: Optional[tuple]) -> torch.Tensor:
        """Weights ``[B]`` of the source behaviours; the source loss term is ``(weights * losses).sum()``."""
        return self.normalise(self.scores(item_emb, histories))
