r"""
DeepAPF
################################################
Reference:
    Huan Yan, Xiangning Chen, Chen Gao, Yong Li and Depeng Jin. "DeepAPF: Deep Attentive Probabilistic
    Factorization for Multi-site Video Recommendation." in IJCAI 2019.
"""

import torch
import torch.nn as nn
from recbole.data.interaction import Interaction

from recbole_biao.data.dataset import DOMAINS
from recbole_biao.model.abstract import CrossDomainCTRRecommender

__all__ = ["DeepAPF"]


class DeepAPF(CrossDomainCTRRecommender):
    r"""A user has a cross-domain (shared) interest and a domain-specific one; for each candidate an attention
    network weighs the two: ``a_k = w^T relu(W (u_k * v) + b)`` for ``k`` in {shared, domain}, ``softmax`` over
    the two, ``u = sum_k a_k u_k``; ``logit_d = h_d^T (u * v) + c_d`` with the domain's item embedding ``v``.
    The attention network is one for both domains, as the cross-domain interest is.

    Note:
        This is the user-overlap form (the users are shared; the paper's multi-site video users). Under
        ``S`` the shared interest learns from the target alone; ``-0`` keeps both interests, no source loss.
    """

    HEADS = ("source_head", "target_head")
    TARGET_HEAD = "target_head"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        self.shared_users = nn.Embedding(self.total_num_users, d, padding_idx=0)
        self.users = nn.ModuleDict({dom: nn.Embedding(self.total_num_users, d, padding_idx=0) for dom in DOMAINS})
        self.items = nn.ModuleDict({dom: nn.Embedding(self.total_num_items, d, padding_idx=0) for dom in DOMAINS})
        self.attention = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 1, bias=False))
        self.source_head, self.target_head = nn.Linear(d, 1), nn.Linear(d, 1)
        self.init_weights()

    def interest_weights(self, interests: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """``[B, 2]`` softmax attention of the (shared, domain) interests ``[B, 2, d]`` for the items ``[B, d]``."""
        return torch.softmax(self.attention(interests * item[:, None, :]).squeeze(-1), dim=-1)

    def score(self, interaction: Interaction, domain: str) -> torch.Tensor:
        users = interaction[self.USER_ID[domain]]
        item = self.items[domain](interaction[self.ITEM_ID[domain]])
        interests = torch.stack([self.shared_users(users), self.users[domain](users)], dim=1)
        user = (self.interest_weights(interests, item)[..., None] * interests).sum(1)
        head = self.source_head if domain == "source" else self.target_head
        return head(user * item).squeeze(-1)

    def item_embedding(self, items: torch.Tensor, domain: str) -> torch.Tensor:
        return self.items[domain](items).detach()
