r"""
MiNet
################################################
Reference:
    Wentao Ouyang, Xiuwu Zhang, Lei Zhao, Jinmei Luo, Yu Zhang, Heng Zou, Zhaojie Liu and Yanlong Du.
    "MiNet: Mixed Interest Network for Cross-Domain Click-Through Rate Prediction." in CIKM 2020.
"""

import torch
import torch.nn as nn
from recbole.data.interaction import Interaction
from recbole.model.layers import MLPLayers

from recbole_biao.model.abstract import CrossDomainCTRRecommender
from recbole_biao.model.layers import AttentionPooling, history_mask

__all__ = ["MiNet"]


class MiNet(CrossDomainCTRRecommender):
    r"""Mixed interests for a target candidate: the user's long-term interest (a user embedding shared by both
    domains), a short-term interest from the target history and one from the source history (source items
    mapped into the target space by a transfer matrix), each short-term interest by item-level attention
    with the candidate; interest-level attention gives each interest a positive weight
    (``exp`` of a small layer over all of them and the candidate). ``[weighted interests; candidate]`` go
    through the target MLP; the source domain has its own MLP on ``[source item; user]``.

    Note:
        Histories are the user's positive behaviours strictly before the scored one (``history_length``).
        The variant ``S`` drops the source interest, the transfer matrix and the source MLP.
    """

    HEADS = ("source_head", "target_head")
    TARGET_HEAD = "target_head"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        dim = 2 * d  # an item is [ID; category]
        attention, mlp = config["attention_size"], list(config["mlp_hidden_size"])
        self.interests = 3 if self.uses_source else 2

        # embeddings
        self.user_embedding = nn.Embedding(self.total_num_users, dim, padding_idx=0)
        self.build_item_embeddings(d)

        # item-level attention (target history; source history after the transfer matrix)
        self.target_attention = AttentionPooling(dim, attention)
        if self.uses_source:
            self.transfer = nn.Linear(dim, dim, bias=False)
            self.source_attention = AttentionPooling(dim, attention)

        # interest-level attention and the two towers
        self.interest_attention = nn.Sequential(
            nn.Linear((self.interests + 1) * dim, attention), nn.ReLU(), nn.Linear(attention, self.interests))
        self.target_head = nn.Sequential(MLPLayers([(self.interests + 1) * dim, *mlp]), nn.Linear(mlp[-1], 1))
        self.source_head = nn.Sequential(MLPLayers([2 * dim, *mlp]), nn.Linear(mlp[-1], 1))
        self.init_weights()

    def _short_term(self, interaction, hist_domain, candidate):
        items, lengths = self.history(interaction, "target", hist_domain)
        emb = self.embed_items(items, hist_domain)
        if hist_domain == "source":
            return self.source_attention(self.transfer(emb), candidate, history_mask(items, lengths))[0]
        return self.target_attention(emb, candidate, history_mask(items, lengths))[0]

    def interest_weights(self, interests: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        """``[B, k]`` positive weights of the ``k`` interests."""
        logits = self.interest_attention(torch.cat([*interests, candidate], dim=-1))
        return torch.exp(logits.clamp(max=20.0))  # clamped so that exp never overflows

    def score(self, interaction: Interaction, domain: str) -> torch.Tensor:
        user = self.user_embedding(interaction[self.USER_ID[domain]])
        candidate = self.embed_items(interaction[self.ITEM_ID[domain]], domain)
        if domain == "source":
            return self.source_head(torch.cat([candidate, user], dim=-1)).squeeze(-1)
        interests = [user, self._short_term(interaction, "target", candidate)]
        if self.uses_source:
            interests.append(self._short_term(interaction, "source", candidate))
        weights = self.interest_weights(interests, candidate)
        mixed = [w[:, None] * x for w, x in zip(weights.unbind(-1), interests)]
        return self.target_head(torch.cat([*mixed, candidate], dim=-1)).squeeze(-1)
