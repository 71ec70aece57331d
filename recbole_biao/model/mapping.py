"""The base of the staged mapping models of the zoo (EMCDR, SSCDR, DCDCSR): a factorisation per domain (the
SOURCE and TARGET phases), then a map of user factors fitted on the users of both domains (the OVERLAP phase),
through which a target behaviour is scored once the map is being fitted and after training."""

import torch
import torch.nn as nn

from recbole_biao.data.dataset import DOMAINS
from recbole_biao.errors import ConfigError
from recbole_biao.model.factorization import FactorizationRecommender

__all__ = ["MappingRecommender"]


class MappingRecommender(FactorizationRecommender):
    r"""Per-domain user and item factors (``embedding_size``) and ``mapping`` (``mapping_function``: ``linear``,
    or ``non_linear``: an MLP with tanh hidden layers ``mlp_hidden_size``). Subclasses give
    :meth:`overlap_loss`. Staged: no -S / -0 variants, and trainer BIAO refuses them."""

    PHASES = ("SOURCE", "TARGET", "OVERLAP")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        name = type(self).__name__
        if self.variant != "base":
            raise ConfigError(f"{name}-{self.variant}: the staged mapping model has no single-domain variants; its "
                              f"TARGET phase alone is one factorisation (train_epochs: ['TARGET:20'])")
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

    def user_table(self, domain: str) -> nn.Embedding:
        return self.users[domain]

    def item_table(self, domain: str) -> nn.Embedding:
        return self.items[domain]

    @property
    def mapped(self) -> bool:
        """Whether target behaviours are scored through the mapping (every phase but TARGET and SOURCE)."""
        return self.phase not in ("SOURCE", "TARGET")

    MAP_FROM = "source"  # the domain whose user factor the mapping reads

    def user_vector(self, users: torch.Tensor, domain: str) -> torch.Tensor:
        if domain == "target" and self.mapped:
            return self.mapping(self.users[self.MAP_FROM](users))
        return self.users[domain](users)
