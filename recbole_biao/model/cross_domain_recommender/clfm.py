r"""
CLFM
################################################
Reference:
    Sheng Gao, Hao Luo, Da Chen, Shantao Li, Patrick Gallinari and Jun Guo. "Cross-Domain Recommendation via
    Cluster-Level Latent Factor Model." in ECML-PKDD 2013.
"""

import torch
import torch.nn as nn

from recbole_biao.data.dataset import DOMAINS
from recbole_biao.errors import ConfigError
from recbole_biao.model.factorization import FactorizationRecommender

__all__ = ["CLFM"]


class CLFM(FactorizationRecommender):
    r"""Each domain's matrix as ``X_d ~ U_d [S_0, S_d] V_d^T``: user and item factors of the domain's own, and a
    cluster-level pattern whose first ``shared_embedding_size`` columns ``S_0`` both domains share (what
    transfers) while the rest ``S_d`` is the domain's: ``logit = (u [S_0, S_d]) . v + b_domain``, logistic link,
    L2 penalty ``reg_weight`` on the factors, the source loss weighted by ``loss_gamma``.

    Note:
        The paper needs no user correspondence: a user has a factor per domain even where the IDs are
        shared. ``shared_embedding_size`` 0 makes two unrelated factorisations; ``embedding_size`` makes the
        whole pattern shared. ``CLFM-S`` and ``CLFM-0`` train the target factorisation alone (the shared
        pattern then learns from the target only).
    """

    OVERLAP = ("user", "item")  # the shared pattern needs no correspondence

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d, shared = self.embedding_size, config["shared_embedding_size"]
        if not 0 <= shared <= d:
            raise ConfigError(f"properties key shared_embedding_size: expected 0..embedding_size ({d}), got {shared}")
        self.users = nn.ModuleDict({dom: nn.Embedding(self.total_num_users, d, padding_idx=0) for dom in DOMAINS})
        self.items = nn.ModuleDict({dom: nn.Embedding(self.total_num_items, d, padding_idx=0) for dom in DOMAINS})
        # a pattern maps a user factor to the item space: x -> x S, S = [S_0, S_d] (k x l), bias-free
        self.shared_pattern = nn.Linear(d, shared, bias=False)
        self.domain_patterns = nn.ModuleDict({dom: nn.Linear(d, d - shared, bias=False) for dom in DOMAINS})
        self.init_weights()

    def user_table(self, domain: str) -> nn.Embedding:
        return self.users[domain]

    def item_table(self, domain: str) -> nn.Embedding:
        return self.items[domain]

    def project(self, user: torch.Tensor, domain: str) -> torch.Tensor:
        return torch.cat([self.shared_pattern(user), self.domain_patterns[domain](user)], dim=-1)
