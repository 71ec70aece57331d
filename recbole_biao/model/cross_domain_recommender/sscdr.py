r"""
SSCDR
################################################
Reference:
    SeongKu Kang, Junyoung Hwang, Dongha Lee and Hwanjo Yu. "Semi-Supervised Learning for Cross-Domain
    Recommendation to Cold-Start Users." in CIKM 2019.
"""

import numpy as np
import torch
from recbole.data.interaction import Interaction

from recbole_biao.data.dataloader import OVERLAP_FIELD
from recbole_biao.data.dataset import DOMAINS
from recbole_biao.model.layers import candidate_products
from recbole_biao.model.mapping import MappingRecommender

__all__ = ["SSCDR"]


def unit_ball(x: torch.Tensor) -> torch.Tensor:
    """``x`` scaled into the unit ball where it lies outside (metric learning's norm constraint)."""
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1.0)


class SSCDR(MappingRecommender):
    r"""Metric learning per domain, then a semi-supervised mapping, in three stages (``train_epochs``):

    1. ``SOURCE`` and 2. ``TARGET``: users and items as points in the unit ball, ``logit = -|u - v|^2 + b``
       (the CTR form of the paper's metric: the logistic loss on the labelled rows in place of its triplets);
    3. ``OVERLAP``: the mapping ``f`` learns from both kinds of signal on the users of both domains, with the
       stages' points fixed: supervised, ``|f(u_s) - u_t|^2``; and, weighted by ``lambda``, unsupervised, a
       triplet of the user's target point, a source item the user had (its mapped point) and one the user had
       not: ``max(0, margin + d(u_t, f(v+)) - d(u_t, f(v-)))`` (``d``: Euclidean distance).

    After training a target behaviour of a user of both domains is scored with ``f(u_s)``, as EMCDR does.

    Note:
        The items a user had are the user's positive source *training* behaviours; the item a user had not is
        drawn uniformly among the source items outside them. Built for cold-start users, as EMCDR.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.unsupervised_weight, self.margin = float(config["lambda"]), float(config["margin"])
        self.had = None
        self.init_weights()

    def use_training_data(self, data) -> None:
        rows = data.splits["train_source"]
        positive = rows.label > 0
        order = np.lexsort((rows.item[positive], rows.user[positive]))
        users, items = rows.user[positive][order], rows.item[positive][order]
        self.bound = int(items.max()) + 1
        # sorted by user: each user's items are one slice; the (user, item) keys for the had-not check
        self.had = (users, items, np.unique(items), users.astype(np.int64) * self.bound + items)

    def match(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return -(unit_ball(user) - unit_ball(item)).pow(2).sum(-1)

    def match_candidates(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        user, item = unit_ball(user), unit_ball(item)
        # -|u - v|^2 = 2 u.v - |u|^2 - |v|^2: a matrix product in place of the [B, C, d] differences
        return 2 * candidate_products(user, item) - user.pow(2).sum(-1)[:, None] - item.pow(2).sum(-1)

    def draw_items(self, users: np.ndarray, rng: np.random.Generator):
        """``(had, had_not)``: for each user one source item of the user's and one the user never had."""
        owners, items, pool, owned = self.had
        start, end = np.searchsorted(owners, users), np.searchsorted(owners, users, side="right")
        had = items[np.minimum(start + (rng.random(len(users)) * (end - start)).astype(np.int64), len(items) - 1)]
        had_not = pool[rng.integers(len(pool), size=len(users))]
        base = users.astype(np.int64) * self.bound
        for _ in range(20):  # redraw the ones the user had
            clash = np.isin(base + had_not, owned)
            if not clash.any():
                break
            had_not[clash] = pool[rng.integers(len(pool), size=int(clash.sum()))]
        return had, had_not

    def overlap_loss(self, interaction: Interaction) -> torch.Tensor:
        users = interaction[OVERLAP_FIELD]
        source, target = (self.users[dom](users).detach() for dom in DOMAINS)  # the stages' points stay fixed
        supervised = (self.mapping(source) - target).pow(2).sum(-1).mean()
        seed = int(torch.randint(0, 2 ** 31 - 1, (1,)).item())  # from torch's seeded stream: reproducible
        had, had_not = (torch.from_numpy(x).to(users.device)
                        for x in self.draw_items(users.cpu().numpy(), np.random.default_rng(seed)))
        mapped = [unit_ball(self.mapping(self.items["source"](x).detach())) for x in (had, had_not)]
        anchor = unit_ball(target)
        gap = (anchor - mapped[0]).norm(dim=-1) - (anchor - mapped[1]).norm(dim=-1)
        return supervised + self.unsupervised_weight * torch.relu(self.margin + gap).mean()
