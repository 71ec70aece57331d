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

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.layers import MLPLayers

from recbole_biao.errors import ConfigError

__all__ = ["PooledSelfAttention", "BehaviouralPerceptron"]


class PooledSelfAttention(nn.Module):
    """Multi-head self-attention over ``x_i = [h_i; e]`` followed by masked mean pooling over valid positions.

    ``h_i`` are history item embeddings, ``e`` the candidate item's embedding (the same for every position
    of a row). The result equals ``masked_mean(nn.MultiheadAttention(x, x, x, key_padding_mask=~mask))``
    with this module's ``nn.MultiheadAttention`` parameters, computed faster:

    - the projections are linear, so ``W x_i = W_h h_i + W_e e``: ``W_h`` is applied once per distinct
      history item (``table``) and gathered by ``index``, ``W_e`` once per row;
    - the output projection is linear, so it runs after the pooling, once per row.

    A row without any valid position pools to zeros.

    Args:
        dim (int): size of ``x_i``; heads (int): number of heads (must divide ``dim``).
    """

    def __init__(self, dim, heads):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"properties key 'perceptron_heads': expected a divisor of the perceptron's attention "
                              f"size {dim}, got {heads}")
        self.heads = heads
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, table, index, item_emb, mask):
        """
        Args:
            table: ``[U, Dh]`` embeddings of the distinct history items; index: ``[B, N]`` rows of ``table``.
            item_emb: ``[B, De]`` the candidate's embedding; mask: ``[B, N]`` bool, True at valid positions.

        Returns:
            ``[B, Dh + De]`` the pooled attention output.
        """
        b, n = index.shape
        dim, h = self.attention.embed_dim, self.heads
        split = table.shape[-1]
        weight, bias = self.attention.in_proj_weight, self.attention.in_proj_bias
        per_item = table @ weight[:, :split].T  # [U, 3 * dim]: W_h h for q, k, v at once
        per_row = item_emb @ weight[:, split:].T + bias  # [B, 3 * dim]
        qkv = per_item[index] + per_row[:, None, :]  # [B, N, 3 * dim]
        q, k, v = (t.reshape(b, n, h, dim // h).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
        any_valid = mask.any(-1)
        # a row without valid keys would give NaN: it attends everywhere and is zeroed below
        keys = (mask | ~any_valid[:, None])[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)  # [B, h, N, dim / h]
        out = out.transpose(1, 2).reshape(b, n, dim)
        valid = mask.to(out.dtype)
        pooled = (out * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1.0)
        return self.attention.out_proj(pooled) * any_valid[:, None].to(out.dtype)


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
    """

    MODES = ("full", "gamma_only")

    def __init__(self, item_dim, heads=4, hidden_size=(32, 16), norm="softmax", use_global=True, use_user=True,
                 mode="full", score_bound=None, local_bias_init=None, global_init_scale=None):
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
        self.gamma_raw = nn.Parameter(torch.ones(()))

    @property
    def gamma(self):
        return torch.relu(self.gamma_raw)

    @property
    def needs_histories(self):
        return self.use_user

    def scores(self, item_emb, histories):
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
            pooled = [self.attention[d](*histories[d][:2], item_emb, histories[d][2]) for d in ("source", "target")]
            score = score * self.local_mlp(torch.cat(pooled, dim=-1)).squeeze(-1)
        return score

    def normalise(self, score):
        """``gamma * norm(score)`` over the batch; with ``score_bound`` c the scores first become
        ``c * tanh((score - batch mean) / c)`` (centred, so that a shift of all scores, to which the softmax is
        blind, can never push them into saturation)."""
        if self.score_bound:
            c = self.score_bound
            score = c * torch.tanh((score - score.mean()) / c)
        if self.norm == "softmax":
            return self.gamma * torch.softmax(score, dim=0)
        return self.gamma * torch.sigmoid(score) / score.shape[0]

    def forward(self, item_emb, histories):
        """Weights ``[B]`` of the source behaviours; the source loss term is ``(weights * losses).sum()``."""
        return self.normalise(self.scores(item_emb, histories))
