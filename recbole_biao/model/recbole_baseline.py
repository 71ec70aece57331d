"""RecBole's own CTR models as single-domain baselines on the target domain.

Any context-aware model of RecBole 1.0.1 (DeepFM, WideDeep, xDeepFM, DCN, AutoInt, ...; ``recbole.model.
context_aware_recommender``) and DIN (from its sequential family) are built and trained unchanged: the RecBole
model object is constructed from its own class with its own properties file (``recbole/properties/model/<Name>
.yaml``) and its own ``calculate_loss`` / ``predict`` run on every batch. What recbole-biao supplies is the data:
the target rows of the paper's split (the same training, valid and test behaviours and labels as the
cross-domain models), renamed to RecBole's single-domain fields:

- ``user_id``, ``item_id`` (token fields), ``category`` (the item's category, an item feature: the cross-domain
  models embed items as ``[ID; category]`` too), ``label``;
- ``item_id_list`` / ``item_length`` for DIN: the target history (the user's most recent target positives
  strictly earlier in time, ``history_length`` of them), RecBole's sequence feature.

No source behaviour reaches the model; no time, rating or other column is offered as a feature.

:func:`recbole_model_class` finds the RecBole class; :func:`baseline_class` makes the class that
``run_recbole_biao`` builds (one per RecBole model, named like it).
"""

import functools
import importlib
import importlib.util
import os
from typing import Optional

import torch
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType, InputType
from recbole_cdr.model.crossdomain_recommender import CrossDomainRecommender

from recbole_biao.data.dataloader import batch_field
from recbole_biao.errors import ConfigError
from recbole_biao.model.abstract import per_candidate

__all__ = ["RecBoleBaseline", "TargetDomainFields", "baseline_class", "recbole_model_class", "recbole_model_yaml",
           "SEQUENTIAL_CTR"]

SEQUENTIAL_CTR = ("DIN",)  # RecBole 1.0.1's sequential models that predict a click (pointwise, labelled)
USER, ITEM, CATEGORY, LABEL = "user_id", "item_id", "category", "label"
ITEM_LIST, ITEM_LENGTH = "item_id_list", "item_length"


def recbole_model_class(name: str) -> Optional[type]:
    """The RecBole 1.0.1 class of a context-aware model or of DIN called ``name``; None for any other name."""
    if not name.isidentifier():
        return None
    families = {"context_aware_recommender": None, "sequential_recommender": SEQUENTIAL_CTR}
    for family, allowed in families.items():
        if allowed is not None and name not in allowed:
            continue
        path = f"recbole.model.{family}.{name.lower()}"
        if importlib.util.find_spec(path) is not None:
            model = getattr(importlib.import_module(path), name, None)
            if isinstance(model, type):
                return model
    return None


def recbole_model_yaml(name: str) -> str:
    import recbole

    return os.path.join(os.path.dirname(recbole.__file__), "properties", "model", f"{name}.yaml")


class TargetDomainFields:
    """The part of RecBole's ``Dataset`` that RecBole's CTR models read when they are built: field types and
    sources, vocabulary sizes and the user and item feature tables of the target domain.

    Args:
        num_users (int), num_items (int): sizes of the (joint) user and item ID spaces, padding 0 included.
        item_category (torch.Tensor): ``[num_items]`` category ID of each item; num_categories (int).
    """

    def __init__(self, num_users: int, num_items: int, item_category: torch.Tensor, num_categories: int):
        self.uid_field, self.iid_field, self.label_field = USER, ITEM, LABEL
        self.user_num, self.item_num = num_users, num_items
        self.field2type = {USER: FeatureType.TOKEN, ITEM: FeatureType.TOKEN, CATEGORY: FeatureType.TOKEN,
                           LABEL: FeatureType.FLOAT}
        self.field2source = {USER: FeatureSource.USER_ID, ITEM: FeatureSource.ITEM_ID, CATEGORY: FeatureSource.ITEM,
                             LABEL: FeatureSource.INTERACTION}
        self._num = {USER: num_users, ITEM: num_items, CATEGORY: num_categories, LABEL: 1}
        self.item_category = item_category

    def num(self, field: str) -> int:
        if field not in self._num:
            raise ValueError(f"Field [{field}] not defined in dataset.")
        return self._num[field]

    def fields(self, ftype=None, source=None) -> list:
        ftype = set(ftype) if ftype is not None else set(FeatureType)
        source = set(source) if source is not None else set(FeatureSource)
        return [f for f, t in self.field2type.items() if t in ftype and self.field2source[f] in source]

    def get_user_feature(self) -> Interaction:
        return Interaction({USER: torch.arange(self.user_num)})

    def get_item_feature(self) -> Interaction:
        return Interaction({ITEM: torch.arange(self.item_num), CATEGORY: self.item_category.clone()})


class _RecBoleConfig:
    """recbole-biao's config as a RecBole single-domain model reads it: the field names of
    :class:`TargetDomainFields` (and DIN's sequence length) first, every other key from the run's config."""

    def __init__(self, config, fields: dict):
        self._config, self._fields = config, fields

    def __getitem__(self, key):
        return self._fields[key] if key in self._fields else self._config[key]

    def __contains__(self, key):
        return key in self._fields or key in self._config


class RecBoleBaseline(CrossDomainRecommender):
    """A RecBole model (class attribute ``RECBOLE_MODEL``) trained on the target rows of recbole-biao's
    batches. Its parameters are the RecBole model's, under ``recbole_model.``."""

    RECBOLE_MODEL = None
    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        name = type(self).__name__
        trainer = config["trainer"] or "CrossDomain"
        if not trainer.startswith("CrossDomain"):
            raise ConfigError(f"--model={name} is RecBole's single-domain model; trainer '{trainer}' needs a "
                              f"cross-domain model (CoNet, MiNet, DASL)")
        self.sequential = name in SEQUENTIAL_CTR
        self.history_length = config["history_length"]
        self.register_buffer("item_category", torch.from_numpy(dataset.item_category["target"]))
        self.fields = TargetDomainFields(dataset.num_total_user, dataset.num_total_item, self.item_category,
                                         dataset.num_categories["target"])
        names = {"USER_ID_FIELD": USER, "ITEM_ID_FIELD": ITEM, "LABEL_FIELD": LABEL, "NEG_PREFIX": "neg_",
                 "LIST_SUFFIX": "_list", "ITEM_LIST_LENGTH_FIELD": ITEM_LENGTH,
                 "MAX_ITEM_LIST_LENGTH": self.history_length}
        self.recbole_model = self.RECBOLE_MODEL(_RecBoleConfig(config, names), self.fields)

    def recbole_batch(self, interaction: Interaction) -> Interaction:
        """The target rows of a recbole-biao batch under RecBole's single-domain field names."""
        items = interaction[batch_field("target", "item_id")]
        fields = {USER: interaction[batch_field("target", "user_id")], ITEM: items,
                  CATEGORY: self.item_category[items], LABEL: interaction[batch_field("target", "label")]}
        if self.sequential:
            fields[ITEM_LIST] = interaction[batch_field("target", "hist_target")][:, :self.history_length]
            fields[ITEM_LENGTH] = interaction[batch_field("target", "hist_target_len")].clamp(max=self.history_length)
        return Interaction(fields)

    def calculate_loss(self, interaction: Interaction) -> torch.Tensor:
        return self.recbole_model.calculate_loss(self.recbole_batch(interaction))

    def predict(self, interaction: Interaction) -> torch.Tensor:
        return self.recbole_model.predict(self.recbole_batch(interaction))

    def use_training_data(self, data) -> None:
        """(The model contract's hook: RecBole's models read only their batches.)"""

    def candidate_scores(self, interaction: Interaction, items: torch.Tensor) -> torch.Tensor:
        """The ranking protocol's scores: RecBole's click probability of each candidate (a monotone score)."""
        rows = per_candidate(interaction, items, batch_field("target", "item_id"))
        return self.predict(rows).view(len(interaction), -1)


@functools.lru_cache(maxsize=None)
def baseline_class(name: str) -> type:
    """The class ``run_recbole_biao`` builds for RecBole's model ``name`` (named like it, so that its properties
    file and checkpoints carry the name); a :class:`ConfigError` when RecBole has no such CTR model."""
    model = recbole_model_class(name)
    if model is None:
        raise ConfigError(f"'{name}' is not a RecBole 1.0.1 context-aware model or DIN")
    return type(name, (RecBoleBaseline,), {"RECBOLE_MODEL": model, "__module__": __name__,
                                            "__doc__": f"RecBole's {name} on the target domain (see RecBoleBaseline)."})
