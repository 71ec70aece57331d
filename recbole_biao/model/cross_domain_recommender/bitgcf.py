r"""
BiTGCF
################################################
Reference:
    Meng Liu, Jianjun Li, Guohui Li and Peng Pan. "Cross Domain Recommendation via Bi-directional Transfer
    Graph Collaborative Filtering Networks." in CIKM 2020.
"""

from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.data.interaction import Interaction

from recbole_biao.data.dataset import DOMAINS
from recbole_biao.model.abstract import CrossDomainCTRRecommender
from recbole_biao.model.layers import Bias, WordDropout, PRODUCT_SCORES_PER_CALL, candidate_products

__all__ = ["BiTGCF", "normalized_adjacency", "graph_layer"]

TRAIN_SPLIT = {"source": "train_source", "target": "train_target"}


def normalized_adjacency(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` (sparse, ``(U + I) x (U + I)``) of the bipartite graph with an edge between each
    ``users[k]`` and ``items[k]`` (node ``num_users + item`` for an item; repeated pairs are one edge)."""
    pairs = np.unique(np.stack([users, items], 1).astype(np.int64), axis=0)
    rows = np.concatenate([pairs[:, 0], num_users + pairs[:, 1]])
    cols = np.concatenate([num_users + pairs[:, 1], pairs[:, 0]])
    degree = np.bincount(rows, minlength=num_users + num_items).astype(np.float64)
    scale = np.where(degree > 0, degree, 1.0) ** -0.5
    values = torch.from_numpy((scale[rows] * scale[cols]).astype(np.float32))
    size = num_users + num_items
    index = torch.from_numpy(np.stack([rows, cols]))
    return torch.sparse_coo_tensor(index, values, (size, size), check_invariants=False).coalesce()  # built valid


def graph_layer(adjacency: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """One propagation: ``E + A E + E * (A E)`` (the neighbours' sum and their interaction with the node)."""
    side = torch.sparse.mm(adjacency, embeddings)
    return embeddings + side + embeddings * side


class BiTGCF(CrossDomainCTRRecommender):
    r"""A graph convolution per domain over its user-item graph; after every layer a feature transfer mixes
    the two domains' embeddings of the shared users (and shared items): the mean of a fixed mix
    ``lambda_d e_d + (1 - lambda_d) e_other`` and a degree-weighted one ``(n_s e_s + n_t e_t) / (n_s + n_t)``
    (``n``: the node's training interactions in each domain). Each layer's output is L2-normalised; the final
    embedding joins the layers (``connect_way``: ``concat`` or ``mean``); ``logit = u . i + b_domain``.

    Note:
        The graphs hold the positive training behaviours only (given by :meth:`use_training_data`): valid and
        test behaviours never become edges. The whole graph propagates at each training step; evaluation
        propagates once and reuses it until training resumes. ``BiTGCF-S`` convolves the target graph alone,
        without transfer; ``BiTGCF-0`` keeps the transfer and drops the source loss.
    """

    OVERLAP = ("user", "item")  # the transfer mixes every shared node, user or item
    HEADS = ("source_head", "target_head")
    TARGET_HEAD = "target_head"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        self.n_layers, self.connect_way = config["n_layers"], config["connect_way"]
        self.reg_weight = float(config["reg_weight"])
        self.mix = {"source": float(config["lambda_source"]), "target": float(config["lambda_target"])}
        self.users = nn.ModuleDict({dom: nn.Embedding(self.total_num_users, d, padding_idx=0) for dom in DOMAINS})
        self.items = nn.ModuleDict({dom: nn.Embedding(self.total_num_items, d, padding_idx=0) for dom in DOMAINS})
        self.dropout = WordDropout(config["dropout_prob"])
        self.source_head, self.target_head = Bias(), Bias()
        self.graph: Dict[str, torch.Tensor] = {}
        self.degrees: Dict[str, torch.Tensor] = {}  # per domain [U + I, 1] counts; "shared": the shared nodes
        self.init_weights()

    def use_training_data(self, data) -> None:
        for domain in DOMAINS:
            rows = data.splits[TRAIN_SPLIT[domain]]
            positive = rows.label > 0
            device = self.users[domain].weight.device
            self.graph[domain] = normalized_adjacency(rows.user[positive], rows.item[positive], self.total_num_users,
                                                      self.total_num_items).to(device)
            degree = torch.from_numpy(np.bincount(
                np.concatenate([rows.user[positive], self.total_num_users + rows.item[positive]]),
                minlength=self.total_num_users + self.total_num_items).astype(np.float32))
            self.degrees[domain] = degree[:, None].to(device)
        shared = torch.zeros(self.total_num_users + self.total_num_items, 1, dtype=torch.bool)
        shared[1:self.overlapped_num_users] = True
        shared[self.total_num_users + 1:self.total_num_users + self.overlapped_num_items] = True
        self.degrees["shared"] = shared.to(self.degrees["target"].device)
        self._evaluation_cache.clear()

    def _apply(self, fn, *args, **kwargs):  # .to(device) moves the graphs too (they are not buffers)
        out = super()._apply(fn, *args, **kwargs)
        self.graph = {d: fn(g) for d, g in self.graph.items()}
        self.degrees = {d: fn(g) for d, g in self.degrees.items()}
        return out

    def transfer(self, source: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The feature transfer of the shared nodes (users below ``overlapped_num_users``, items below
        ``overlapped_num_items``; the others keep their own domain's embedding)."""
        shared = self.degrees["shared"]
        n_s, n_t = self.degrees["source"], self.degrees["target"]
        by_degree = (n_s * source + n_t * target) / (n_s + n_t).clamp(min=1e-7)
        mixed = {"source": self.mix["source"] * source + (1 - self.mix["source"]) * target,
                 "target": self.mix["target"] * target + (1 - self.mix["target"]) * source}
        return (torch.where(shared, (mixed["source"] + by_degree) / 2, source),
                torch.where(shared, (mixed["target"] + by_degree) / 2, target))

    def propagate(self) -> Dict[str, torch.Tensor]:
        """``{domain: [U + I, d']}`` the final embeddings of every user and item node."""
        if not self.graph:
            raise RuntimeError("BiTGCF needs its training graphs: call use_training_data(data) after building it")
        domains = DOMAINS if self.uses_source else ("target",)
        current = {dom: torch.cat([self.users[dom].weight, self.items[dom].weight]) for dom in domains}
        layers = {dom: [e] for dom, e in current.items()}
        for _ in range(self.n_layers):
            current = {dom: self.dropout(graph_layer(self.graph[dom], e)) for dom, e in current.items()}
            if self.uses_source:
                current = dict(zip(DOMAINS, self.transfer(current["source"], current["target"])))
            for dom, e in current.items():
                layers[dom].append(F.normalize(e, p=2, dim=1))
        join = (lambda xs: torch.cat(xs, 1)) if self.connect_way == "concat" else (
            lambda xs: torch.stack(xs, 1).mean(1))
        return {dom: join(xs) for dom, xs in layers.items()}

    def propagated_tables(self) -> Dict[str, torch.Tensor]:
        """Per domain the propagated user and item tables: anew at every call while training, once per
        evaluation pass otherwise."""
        return self.evaluation_cached("propagated", self.propagate)

    def _score(self, tables, interaction, domain):
        table = tables[domain]
        user = table[interaction[self.USER_ID[domain]]]
        item = table[self.total_num_users + interaction[self.ITEM_ID[domain]]]
        head = self.source_head if domain == "source" else self.target_head
        return head((user * item).sum(-1))

    def score(self, interaction: Interaction, domain: str) -> torch.Tensor:
        return self._score(self.propagated_tables(), interaction, domain)

    CANDIDATE_SCORES_PER_CALL = PRODUCT_SCORES_PER_CALL

    def candidate_scores(self, interaction: Interaction, items: torch.Tensor) -> torch.Tensor:
        table = self.propagated_tables()["target"]
        user = table[interaction[self.USER_ID["target"]]]
        return self.target_head(candidate_products(user, table[self.total_num_users + items]))

    def _losses(self, tables, interaction, domain):
        losses = self.bce(self._score(tables, interaction, domain), interaction[self.LABEL[domain]])
        if self.reg_weight:
            ego = (self.users[domain](interaction[self.USER_ID[domain]]),
                   self.items[domain](interaction[self.ITEM_ID[domain]]))
            losses = losses + self.reg_weight * sum(e.pow(2).sum(-1) for e in ego)
        return losses

    def domain_losses(self, interaction: Interaction, domain: str) -> torch.Tensor:
        return self._losses(self.propagated_tables(), interaction, domain)

    def behaviour_losses(self, interaction: Interaction) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        tables = self.propagated_tables()  # one propagation serves both domains' rows
        target = self._losses(tables, interaction, "target")
        return target, (self._losses(tables, interaction, "source") if self.has_source_rows(interaction) else None)

    def item_embedding(self, items: torch.Tensor, domain: str) -> torch.Tensor:
        return self.items[domain](items).detach()
