"""The base of the factorisation models of the zoo (CMF, CLFM and the staged EMCDR, SSCDR, DCDCSR): a domain's
logit matches a user and an item factor (a dot product, or another :meth:`match`) plus the domain's bias (its
head), and each behaviour's loss carries the L2 penalty of its own factors, so that a per-behaviour weight
(BIAO's) weights its penalty with it."""

from typing import Tuple

import torch
import torch.nn as nn
from recbole.data.interaction import Interaction

from recbole_biao.model.abstract import CrossDomainCTRRecommender
from recbole_biao.model.layers import Bias, PRODUCT_SCORES_PER_CALL, candidate_products

__all__ = ["FactorizationRecommender"]


class FactorizationRecommender(CrossDomainCTRRecommender):
    r"""``logit = project(u, domain) . v + b_domain``; loss per behaviour ``BCE + reg_weight * (|u|^2 + |v|^2)``.

    Subclasses build their tables, call ``super().__init__`` first and ``self.init_weights()`` last, and give
    :meth:`user_table` and :meth:`item_table`; :meth:`project` maps a user factor into the domain's item space
    (the identity unless the model has such a map); :meth:`user_vector` is the whole user side.
    """

    HEADS = ("source_head", "target_head")
    TARGET_HEAD = "target_head"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.reg_weight = float(config["reg_weight"])
        self.source_head, self.target_head = Bias(), Bias()

    def user_table(self, domain: str) -> nn.Embedding:
        raise NotImplementedError

    def item_table(self, domain: str) -> nn.Embedding:
        raise NotImplementedError

    def project(self, user: torch.Tensor, domain: str) -> torch.Tensor:
        return user

    def user_vector(self, users: torch.Tensor, domain: str) -> torch.Tensor:
        """``[B, d]`` the user side of the domain's dot product (the projected user factor)."""
        return self.project(self.user_table(domain)(users), domain)

    def factors(self, interaction: Interaction, domain: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """``([B, k] user factors, [B, d] item factors)`` of the ``domain`` rows: the parameters the L2 penalty
        is on."""
        return (self.user_table(domain)(interaction[self.USER_ID[domain]]),
                self.item_table(domain)(interaction[self.ITEM_ID[domain]]))

    CANDIDATE_SCORES_PER_CALL = PRODUCT_SCORES_PER_CALL

    def match(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """The logit before the bias of broadcastable ``[..., d]`` user and item vectors: their dot product (a
        subclass that changes it changes :meth:`match_candidates` with it)."""
        return (user * item).sum(-1)

    def match_candidates(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """:meth:`match` of ``[B, d]`` users with ``[C, d]`` candidates shared by every row or ``[B, C, d]`` per
        row: ``[B, C]``, computed without the ``[B, C, d]`` broadcast where it can be."""
        return candidate_products(user, item)

    def score(self, interaction: Interaction, domain: str) -> torch.Tensor:
        user = self.user_vector(interaction[self.USER_ID[domain]], domain)
        item = self.item_table(domain)(interaction[self.ITEM_ID[domain]])
        head = self.source_head if domain == "source" else self.target_head
        return head(self.match(user, item))

    def candidate_scores(self, interaction: Interaction, items: torch.Tensor) -> torch.Tensor:
        user = self.user_vector(interaction[self.USER_ID["target"]], "target")
        return self.target_head(self.match_candidates(user, self.item_table("target")(items)))

    def domain_losses(self, interaction: Interaction, domain: str) -> torch.Tensor:
        losses = super().domain_losses(interaction, domain)
        if self.reg_weight:
            user, item = self.factors(interaction, domain)
            losses = losses + self.reg_weight * (user.pow(2).sum(-1) + item.pow(2).sum(-1))
        return losses

    def item_embedding(self, items: torch.Tensor, domain: str) -> torch.Tensor:
        return self.item_table(domain)(items).detach()
