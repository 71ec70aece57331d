r"""
CoNet
################################################
Reference:
    Guangneng Hu, Yu Zhang and Qiang Yang. "CoNet: Collaborative Cross Networks for Cross-Domain
    Recommendation." in CIKM 2018.

    In the CTR form used by Chen et al., "Cross-domain Recommendation with Behavioral Importance
    Perception." in WWW 2023.
"""

import torch
import torch.nn as nn
from recbole.data.interaction import Interaction

from recbole_biao.model.abstract import CrossDomainCTRRecommender

__all__ = ["CoNet"]


class CoNet(CrossDomainCTRRecommender):
    r"""Two towers joined by cross connections: at every layer
    ``out_s = relu(W_s x_s + H x_t)`` and ``out_t = relu(W_t x_t + H x_s)`` with ``H`` shared;
    ``x_s = [user; source item ID; category]``, ``x_t = [user; target item ID; category]``; one sigmoid head
    per domain.

    Note:
        A behaviour of one domain needs an item of the other domain for the cross connections. Here it is
        the user's most recent positive item of the other domain strictly before the behaviour (its history
        feature; padding when there is none), so the partner never leaks the future. The variant ``S`` drops
        the source tower and the cross connections: the target tower alone is an MLP.
    """

    HEADS = ("source_head", "target_head")
    TARGET_HEAD = "target_head"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        sizes = [3 * d] + list(config["mlp_hidden_size"])

        # embeddings (0 is padding)
        self.user_embedding = nn.Embedding(self.total_num_users, d, padding_idx=0)
        self.build_item_embeddings(d)

        # towers, shared cross connections and heads
        def layers(bias: bool = True) -> nn.ModuleList:
            return nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(sizes[:-1], sizes[1:]))

        self.source_layers, self.target_layers, self.cross_layers = layers(), layers(), layers(bias=False)
        self.source_head = nn.Linear(sizes[-1], 1)
        self.target_head = nn.Linear(sizes[-1], 1)
        self.init_weights()

    def _input(self, user, items, domain):
        return torch.cat([self.user_embedding(user), self.embed_items(items, domain)], dim=-1)

    def score(self, interaction: Interaction, domain: str) -> torch.Tensor:
        other = "target" if domain == "source" else "source"
        user = interaction[self.USER_ID[domain]]
        x = {domain: self._input(user, interaction[self.ITEM_ID[domain]], domain)}
        if not self.uses_source:
            for layer in self.target_layers:
                x["target"] = torch.relu(layer(x["target"]))
            return self.target_head(x["target"]).squeeze(-1)
        # the partner item: the most recent positive of the other domain before this behaviour
        partner = self.history(interaction, domain, other, 1)[0][:, 0]
        x[other] = self._input(user, partner, other)
        for w_s, w_t, h in zip(self.source_layers, self.target_layers, self.cross_layers):
            x = {"source": torch.relu(w_s(x["source"]) + h(x["target"])),
                 "target": torch.relu(w_t(x["target"]) + h(x["source"]))}
        head = self.source_head if domain == "source" else self.target_head
        return head(x[domain]).squeeze(-1)
