r"""
DCDCSR
################################################
Reference:
    Feng Zhu, Yan Wang, Chaochao Chen, Guanfeng Liu, Mehmet Orgun and Jia Wu. "A Deep Framework for
    Cross-Domain and Cross-System Recommendations." in IJCAI 2018.
"""

import numpy as np
import torch
from recbole.data.interaction import Interaction

from recbole_biao.data.dataloader import OVERLAP_FIELD
from recbole_biao.model.mapping import MappingRecommender

__all__ = ["DCDCSR"]


class DCDCSR(MappingRecommender):
    r"""Factorisation per domain, then a deep map to *benchmark* factors, in three stages (``train_epochs``):

    1. ``SOURCE`` and 2. ``TARGET``: matrix factorisation of each domain (logistic link, L2 ``reg_weight``);
    3. ``OVERLAP``: for a user of both domains the benchmark factor weighs the two domains' factors by how
       much of the user's data each holds, ``b_u = (n_s u_s + n_t u_t) / (n_s + n_t)`` (``n``: the user's
       positive training behaviours in the domain), so that the denser domain counts more; an MLP ``f`` maps
       the target factor onto it, ``f(u_t) ~ b_u`` (squared error, factors fixed).

    After training a target behaviour is scored with ``f(u_t) . v_t``: the sparse target factor, corrected
    towards what both domains know of the user.

    Note:
        The paper also builds benchmark factors for users of the target domain alone, from their most similar
        source users; every user of this project's data is in both domains, so that part is not written.
        RecBole-CDR's benchmark weighs the target factor by the source share and normalises factors per row;
        this follows the paper's intent as read above, without the normalisation.
    """

    MAP_FROM = "target"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.counts = None
        self.init_weights()

    def use_training_data(self, data) -> None:
        counts = []
        for split in ("train_source", "train_target"):
            rows = data.splits[split]
            counts.append(np.bincount(rows.user[rows.label > 0], minlength=self.total_num_users))
        self.counts = torch.from_numpy(np.stack(counts, 1).astype(np.float32))  # [users, (source, target)]

    def benchmark(self, users: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` the users' benchmark factors (the stages' factors, fixed)."""
        n = self.counts.to(users.device)[users]
        share = n / n.sum(1, keepdim=True).clamp(min=1)
        return (share[:, :1] * self.users["source"](users) + share[:, 1:] * self.users["target"](users)).detach()

    def overlap_loss(self, interaction: Interaction) -> torch.Tensor:
        users = interaction[OVERLAP_FIELD]
        return (self.mapping(self.users["target"](users).detach()) - self.benchmark(users)).pow(2).sum(-1).mean()
