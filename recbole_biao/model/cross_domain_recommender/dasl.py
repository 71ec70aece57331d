r"""
DASL
################################################
Reference:
    Pan Li, Zhichao Jiang, Maofei Que, Yao Hu and Alexander Tuzhilin. "Dual Attentive Sequential Learning
    for Cross-Domain Click-Through Rate Prediction." in KDD 2021.
"""

import torch
import torch.nn as nn
from recbole.data.interaction import Interaction
from recbole.model.layers import MLPLayers

from recbole_biao.model.abstract import CrossDomainCTRRecommender
from recbole_biao.model.layers import history_mask, masked_softmax

__all__ = ["DASL"]


class DASL(CrossDomainCTRRecommender):
    r"""Dual embedding: per-domain user embeddings joined by an orthogonal mapping X (the target view of a
    user is the mean of its target embedding and X times its source embedding, the source view uses X^T;
    ``orthogonal_weight * ||X^T X - I||^2`` keeps X orthogonal). Dual attention: a GRU encodes each domain's
    history (one GRU per domain, shared by both predictions); the candidate attends over the concatenated
    encoded sequences of both domains, giving the preference vector. ``[preference; candidate; user]``
    goes through the domain's MLP, plus user and item biases; both domains are predicted jointly.

    Note:
        Histories are the user's positive behaviours strictly before the scored one, fed to the GRU oldest
        first. The variant ``S`` keeps only the target embeddings, the target GRU and the target MLP.
    """

    HEADS = ("source_head", "target_head")
    TARGET_HEAD = "target_head"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        dim = 2 * d
        mlp = list(config["mlp_hidden_size"])
        self.orthogonal_weight = config["orthogonal_weight"]
        domains = ("source", "target") if self.uses_source else ("target",)

        # dual embedding
        self.user_tables = nn.ModuleDict({dom: nn.Embedding(self.total_num_users, dim, padding_idx=0) for dom in domains})
        self.build_item_embeddings(d)
        if self.uses_source:
            self.mapping = nn.Parameter(torch.eye(dim))  # source -> target user space

        # dual attention: sequence encoders and bilinear attention with the candidate, per predicted domain
        self.encoders = nn.ModuleDict({dom: nn.GRU(dim, dim, batch_first=True) for dom in domains})
        self.attention = nn.ModuleDict({dom: nn.Linear(dim, dim, bias=False) for dom in domains})

        # prediction
        self.target_head = nn.Sequential(MLPLayers([3 * dim, *mlp]), nn.Linear(mlp[-1], 1))
        self.source_head = nn.Sequential(MLPLayers([3 * dim, *mlp]), nn.Linear(mlp[-1], 1))
        self.user_bias = nn.ModuleDict({dom: nn.Embedding(self.total_num_users, 1) for dom in domains})
        self.item_bias = nn.ModuleDict({dom: nn.Embedding(self.total_num_items, 1) for dom in domains})
        self.init_weights()
        with torch.no_grad():
            if self.uses_source:
                self.mapping.copy_(torch.eye(dim))

    def user_vector(self, user: torch.Tensor, domain: str) -> torch.Tensor:
        own = self.user_tables[domain](user)
        if not self.uses_source:
            return own
        if domain == "target":
            return (own + self.user_tables["source"](user) @ self.mapping.T) / 2
        return (own + self.user_tables["target"](user) @ self.mapping) / 2

    def encode(self, items: torch.Tensor, lengths: torch.Tensor, domain: str) -> torch.Tensor:
        """GRU outputs ``[B, N, D]`` over the history, oldest first, and their mask."""
        n = items.shape[1]
        # histories come most recent first; reverse the valid part of each row
        order = (lengths[:, None] - 1 - torch.arange(n, device=items.device)[None, :]).clamp(min=0)
        mask = history_mask(items, lengths)
        emb = self.embed_items(torch.where(mask, items.gather(1, order), torch.zeros_like(items)), domain)
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.encoders[domain](packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=n)
        return out, mask

    def score(self, interaction: Interaction, domain: str) -> torch.Tensor:
        user_ids = interaction[self.USER_ID[domain]]
        items = interaction[self.ITEM_ID[domain]]
        user = self.user_vector(user_ids, domain)
        candidate = self.embed_items(items, domain)
        seq_domains = ("source", "target") if self.uses_source else ("target",)
        outputs, masks = zip(*(self.encode(*self.history(interaction, domain, d), d) for d in seq_domains))
        sequence, mask = torch.cat(outputs, dim=1), torch.cat(masks, dim=1)
        query = self.attention[domain if self.uses_source else "target"](candidate)
        weights = masked_softmax((sequence * query[:, None, :]).sum(-1), mask)
        preference = (weights[..., None] * sequence).sum(1)
        head = self.source_head if domain == "source" else self.target_head
        bias_domain = domain if self.uses_source else "target"
        logit = head(torch.cat([preference, candidate, user], dim=-1)).squeeze(-1)
        return logit + self.user_bias[bias_domain](user_ids).squeeze(-1) + self.item_bias[bias_domain](items).squeeze(-1)

    def regularization(self) -> torch.Tensor:
        if not self.uses_source:
            return 0.0
        eye = torch.eye(self.mapping.shape[0], device=self.mapping.device)
        return self.orthogonal_weight * ((self.mapping.T @ self.mapping - eye) ** 2).sum()
