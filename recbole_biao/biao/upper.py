"""BIAO's upper level in one object: the behavioural perceptron, its optimiser, how the dev and fresh training
batches of an upper step are drawn, the implicit hypergradient, and the diagnostics that show whether the
perceptron learns (Chen et al., "Cross-domain Recommendation with Behavioral Importance Perception",
WWW 2023, Algorithm 1).

One upper step (:meth:`UpperLevel.step`), every ``interval`` lower steps:

1. draw ``upper_batches`` pairs of a dev batch and a fresh training batch, by ``upper_batching``:

   - ``matched``: a group of ``upper_users`` users from a reshuffled pass over the users (reorder-and-reuse);
     the dev batch is their target training behaviours (at most ``upper_dev_per_user`` of each, a new
     sample every time), the fresh batch up to ``upper_source_per_user``
     of their source behaviours (and their target ones). A source behaviour's gradient and its user's
     target dev gradient then share that user's embedding, which is where the signal travels;
   - ``random`` (the paper): a dev batch of ``dev_batch_size`` from a second, differently ordered pass over
     the target training set and an independent fresh training batch;

2. for each pair, the implicit gradient of the dev loss w.r.t. the perceptron through the model's non-head
   parameters (:mod:`recbole_biao.biao.hypergradient`; ``hypergrad_method``), averaged over the pairs;
3. clip, skip if not finite, and one step of the perceptron's optimiser (``upper_learner``).

The perceptron is not a sub-module of the model: the model's state dict stays the plain backbone's and the
upper level is saved under its own key (:meth:`state_dict`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
from logging import getLogger
from typing import Callable, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from recbole.config import Config
from recbole.data.interaction import Interaction

from recbole_biao import distributed
from recbole_biao.config import training_seed
from recbole_biao.data.dataloader import (BatchStream, TrainDataLoader, UserGroupStream, UserRows, batch_field,
                                          make_batch)
from recbole_biao.data.dataset import DOMAINS
from recbole_biao.errors import ConfigError
from recbole_biao.biao.hypergradient import USES_HESSIAN, clip_and_check, implicit_hypergradient
from recbole_biao.model.layers import distinct_items, history_mask
from recbole_biao.biao.perceptron import BehaviouralPerceptron
from recbole_biao.biao.diagnostics import (MOVED_BELOW, NEAR_UNIFORM_SPREAD, effective_sample_size,
                                              parameter_distance, score_correlation, weight_spread)
from recbole_biao.lazy_adam import dense_tables

__all__ = ["UpperLevel", "UPPER_LEARNERS"]

UPPER_LEARNERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
SOURCE_USER, SOURCE_ITEM = batch_field("source", "user_id"), batch_field("source", "item_id")
TARGET_ITEM = batch_field("target", "item_id")
AUX_HEAD_COSINE_STEPS = 1000  # the reference code's CosineAnnealingLR(T_max=1000), stepped once per upper step


def _upper_optimizer(config, params):
    name = str(config["upper_learner"]).lower()
    if name not in UPPER_LEARNERS:
        raise ConfigError(f"properties key 'upper_learner': expected one of {list(UPPER_LEARNERS)}, got {name!r}")
    return UPPER_LEARNERS[name](params, lr=config["upper_learning_rate"], weight_decay=config["upper_weight_decay"])


class UpperLevel:
    """The perceptron and everything that updates it.

    Args:
        config: the run's configuration (the BIAO keys of ``properties/trainer/BIAO.yaml``).
        model: a recbole-biao model (``item_embedding``, ``history``, ``domain_losses``, ``behaviour_losses``,
            ``non_head_parameters``, ``regularization``, ``TARGET_HEAD``).

    Attributes:
        observer (callable or None): called after every upper step with a dict holding the fresh source
            batches and the hypergradient w.r.t. each behaviour's score (for benchmarks and analyses).
    """

    def __init__(self, config: Config, model: nn.Module):
        self.config, self.model, self.device = config, model, config["device"]
        self.logger = getLogger()
        item_dim = model.item_embedding(torch.zeros(1, dtype=torch.long, device=self.device), "source").shape[-1]
        self.perceptron = BehaviouralPerceptron(
            item_dim, config["perceptron_heads"], list(config["perceptron_hidden_size"]), config["perceptron_norm"],
            config["use_global"], config["use_user"], config["perceptron_mode"], config["score_bound"],
            config["local_bias_init"], config["global_init_scale"], config["learn_attention"]).to(self.device)
        if not config["learn_gamma"] and self.perceptron.mode != "gamma_only":  # gamma_only always learns gamma
            self.perceptron.gamma_raw.requires_grad_(False)
        self.initial = copy.deepcopy(self.perceptron).requires_grad_(False)  # the untrained copy, for diagnostics
        self.learned = [p for p in self.perceptron.parameters() if p.requires_grad]
        self.optimizer = _upper_optimizer(config, self.learned)
        self.history_length = config["perceptron_history_length"]
        self.aux_head = copy.deepcopy(getattr(model, model.TARGET_HEAD)) if config["aux_head"] else None
        if self.aux_head is not None:
            self.aux_optimizer = torch.optim.Adam(self.aux_head.parameters(), lr=config["aux_head_learning_rate"])
            self.aux_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.aux_optimizer, AUX_HEAD_COSINE_STEPS)
        self.observer: Optional[Callable[[dict], None]] = None
        self.stats = {"steps": 0, "skipped": 0, "draws": 0}
        self.epoch_records: list = []
        self.data = None

    # ---- the perceptron's inputs and weights -------------------------------------------------------
    def inputs(self, interaction: Interaction) -> Tuple[torch.Tensor, dict]:
        """The detached embedding of the batch's source items, and per domain their users' histories as
        ``(embeddings of the distinct history items, index into them, mask)`` (None if not needed)."""
        model = self.model
        item_emb = model.item_embedding(interaction[SOURCE_ITEM], "source")
        histories = {d: None for d in DOMAINS}
        if self.perceptron.needs_histories:
            for domain in DOMAINS:
                items, length = model.history(interaction, "source", domain, self.history_length)
                distinct, index = distinct_items(items, model.total_num_items)
                histories[domain] = (model.item_embedding(distinct, domain), index, history_mask(items, length))
        return item_emb, histories

    @torch.no_grad()
    def weights(self, interaction: Interaction) -> torch.Tensor:
        """Weights ``[Bs]`` of a batch's source behaviours for the lower level (no gradient)."""
        return self.perceptron(*self.inputs(interaction))

    # ---- data --------------------------------------------------------------------------------------
    def bind(self, train_data: TrainDataLoader) -> None:
        """Set up the batch sources of the upper level over the training data of ``train_data``."""
        config, data = self.config, train_data.data
        self.data = data
        self.target_split = train_data.target_split
        self.dev_split = "dev" if config["dev_strategy"] == "split" else train_data.target_split
        self.target_length, self.source_length = train_data.history_length, train_data.source_history_length
        seed = training_seed(config)
        ranked = functools.partial(distributed.rank_seed, seed)
        # every rank (torchrun) draws its own dev and fresh batches; the probe is the same on all
        self.dev_stream = BatchStream(data, self.dev_split, config["dev_batch_size"] or config["train_batch_size"],
                                      self.target_length, ranked(2), shuffle=config["dev_order"] == "shuffled")
        if config["upper_batching"] == "matched":
            self.rows = {name: UserRows(data.splits[split].user, data.num_users) for name, split in
                         (("dev", self.dev_split), ("target", self.target_split), ("source", "train_source"))}
            eligible = np.flatnonzero((self.rows["dev"].count > 0) & (self.rows["source"].count > 0))
            if len(eligible) == 0:
                raise ConfigError("upper_batching 'matched' needs users with both dev and source training "
                                  "behaviours; this data has none (use upper_batching: random)")
            self.users = UserGroupStream(eligible, ranked(5))
        else:
            self.target_stream = BatchStream(data, self.target_split, config["train_batch_size"], self.target_length,
                                             ranked(3))
            self.source_stream = BatchStream(data, "train_source", config["train_batch_size"], self.source_length,
                                             ranked(4))
        rows = len(data.splits["train_source"])
        probe = np.sort(np.random.default_rng(seed + 6).permutation(rows)[: config["upper_probe_size"]])
        self.probe = Interaction(make_batch(data, "train_source", probe, self.source_length))

    def batch_pair(self) -> Tuple[Interaction, Interaction]:
        """The next (dev batch, fresh training batch) of the upper level, on the device."""
        data, config = self.data, self.config
        if config["upper_batching"] == "matched":
            users = self.users.next_users(config["upper_users"])
            rng = np.random.default_rng([distributed.rank_seed(training_seed(config)), self.stats["draws"]])
            self.stats["draws"] += 1
            fresh = make_batch(data, "train_source", self.rows["source"].rows(
                users, config["upper_source_per_user"], rng), self.source_length)
            # drawn after the source sample, so that a dev cap leaves the fresh batch as it was
            dev = make_batch(data, self.dev_split, self.rows["dev"].rows(users, config["upper_dev_per_user"], rng),
                             self.target_length)
            if config["hypergrad_method"] in USES_HESSIAN:  # the target rows enter only through the Hessian
                fresh.update(make_batch(data, self.target_split, self.rows["target"].rows(users), self.target_length))
        else:
            dev = self.dev_stream.next_fields()
            fresh = self.target_stream.next_fields()
            fresh.update(self.source_stream.next_fields(len(fresh[TARGET_ITEM])))
        return Interaction(dev).to(self.device), Interaction(fresh).to(self.device)

    # ---- losses ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _target_head(self, head):
        """The model with ``head`` as its target head for the duration (``None``: its own)."""
        model = self.model
        trained_head = getattr(model, model.TARGET_HEAD)
        if head is not None:
            setattr(model, model.TARGET_HEAD, head)
        try:
            yield model
        finally:
            setattr(model, model.TARGET_HEAD, trained_head)

    def dev_loss(self, dev: Interaction) -> torch.Tensor:
        """The upper-level loss of a dev batch (through the auxiliary head with ``aux_head``)."""
        with self._target_head(self.aux_head) as model:
            losses = model.domain_losses(dev, "target")
        return losses.sum() if self.config["dev_loss_reduction"] == "sum" else losses.mean()

    def train_loss(self, fresh: Interaction) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(lower-level loss of the fresh batch as a function of the perceptron, scores, weights)``; without
        target rows in ``fresh`` only its source term (the part that depends on the perceptron)."""
        scores = self.perceptron.scores(*self.inputs(fresh))
        weights = self.perceptron.normalise(scores)
        loss = (weights * self.model.domain_losses(fresh, "source")).sum()
        if TARGET_ITEM in fresh.interaction:
            loss = loss + self.model.domain_losses(fresh, "target").mean() + self.model.regularization()
        return loss, scores, weights

    def fit_aux_head(self) -> int:
        """Reference-implementation trick: train the auxiliary target head on dev batches (the model fixed),
        ``aux_head_steps`` Adam steps; its learning rate follows a cosine schedule stepped once per upper step
        over :data:`AUX_HEAD_COSINE_STEPS` upper steps, as the reference code does. With ``dev_order: file``
        every upper step reads the dev set from its start again (the reference restarts its dev loader)."""
        model, steps = self.model, self.config["aux_head_steps"]
        if steps <= 0:
            return 0
        stream = self.dev_stream
        if self.config["dev_order"] == "file":
            stream = BatchStream(self.data, self.dev_split, stream.batch_size, self.target_length, shuffle=False)
        frozen = [p for p in model.parameters() if p.requires_grad]
        for p in frozen:  # only the head's graph is built
            p.requires_grad_(False)
        try:
            with self._target_head(self.aux_head):
                for _ in range(steps):
                    batch = stream.next_batch().to(self.device)
                    loss = model.domain_losses(batch, "target").mean()
                    self.aux_optimizer.zero_grad()
                    loss.backward()
                    distributed.average_gradients(self.aux_head.parameters())  # the same head on every rank
                    self.aux_optimizer.step()
        finally:
            for p in frozen:
                p.requires_grad_(True)
        self.aux_schedule.step()
        return steps

    # ---- the upper step ----------------------------------------------------------------------------
    def _hypergradients(self, hyper):
        """``(sum of the hypergradients of the upper_batches pairs, their observations)``."""
        config = self.config
        total, observed = None, []
        for _ in range(config["upper_batches"]):
            dev, fresh = self.batch_pair()
            if fresh[SOURCE_ITEM].numel() == 0:
                continue
            dev_loss = self.dev_loss(dev)
            # the Hessian-vector products differentiate this graph twice, which cuDNN's RNNs (DASL) cannot
            with torch.backends.cudnn.flags(enabled=False):
                train_loss, scores, weights = self.train_loss(fresh)
            # the scores ride along as extra "hyper-parameters": their gradient is each behaviour's signal
            extra = [scores] if scores.requires_grad else []  # (uniform scores under gamma_only have none)
            grads = implicit_hypergradient(dev_loss, train_loss, self.model.non_head_parameters(), hyper + extra,
                                           config["hypergrad_method"], config["neumann_iterations"],
                                           config["neumann_alpha"])
            score_grad = grads.pop().detach() if extra else torch.zeros_like(scores)
            total = grads if total is None else [t + g for t, g in zip(total, grads)]
            observed.append({SOURCE_USER: fresh[SOURCE_USER].cpu(), SOURCE_ITEM: fresh[SOURCE_ITEM].cpu(),
                             "score_grad": score_grad.cpu(), "weights": weights.detach().cpu()})
        return total, observed

    def step(self, global_step: Optional[int] = None) -> Optional[dict]:
        """One upper step; returns its diagnostics (also logged at debug level)."""
        config = self.config
        if self.aux_head is not None:
            self.fit_aux_head()
        hyper = self.learned
        before = [p.detach().clone() for p in hyper]
        with dense_tables(self.model):  # (learner sparse_adam)
            total, observed = self._hypergradients(hyper)
        # the mean over every observed batch of every rank (torchrun): the same step on all ranks
        total = total if total is not None else [torch.zeros_like(p) for p in hyper]
        mean, count = distributed.average_tensors(total, len(observed))
        if count == 0:
            return None
        grads, norm = clip_and_check(mean, config["hypergrad_clip"])
        record = {"step": global_step, "hypergrad_norm": norm, "skipped": grads is None}
        if grads is None:
            self.stats["skipped"] += 1
            self.logger.warning(f"step {global_step}: hypergradient not finite (norm {norm}); upper step skipped")
        else:
            self.optimizer.zero_grad()
            for p, g in zip(hyper, grads):
                p.grad = g
            self.optimizer.step()
            self.stats["steps"] += 1
        weights = torch.cat([o["weights"] for o in observed]) if observed else torch.ones(1)
        record.update(relative_change=parameter_distance(hyper, before), gamma=float(self.perceptron.gamma.detach()),
                      weight_spread=weight_spread(weights), ess=effective_sample_size(weights))
        self.epoch_records.append(record)
        self.logger.debug("BIAO upper step " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                         for k, v in record.items()))
        if self.observer is not None:
            self.observer({**record, "batches": observed})
        return record

    # ---- diagnostics -------------------------------------------------------------------------------
    @torch.no_grad()
    def probe_report(self) -> dict:
        """Diagnostics of the perceptron on the fixed probe of source behaviours, on the current embeddings."""
        probe = self.probe.to(self.device)
        inputs = self.inputs(probe)
        scores, initial = self.perceptron.scores(*inputs), self.initial.scores(*inputs)
        weights = self.perceptron.normalise(scores)
        return {"probe": len(scores), "correlation": score_correlation(scores, initial),
                "moved": parameter_distance(self.perceptron.parameters(), self.initial.parameters()),
                "gamma": float(self.perceptron.gamma.detach()), "weight_spread": weight_spread(weights),
                "ess": effective_sample_size(weights)}

    def end_epoch(self, epoch: int) -> dict:
        """Log the epoch's summary at info level; warn when the perceptron has not measurably moved."""
        records, self.epoch_records = self.epoch_records, []
        report = self.probe_report()
        norms = [r["hypergrad_norm"] for r in records]
        self.logger.info(
            f"BIAO upper level, epoch {epoch}: {len(records)} upper steps ({sum(r['skipped'] for r in records)} "
            f"skipped), mean hypergradient norm {np.mean(norms) if norms else float('nan'):.3g}, perceptron moved "
            f"{100 * report['moved']:.3g}% from its initialisation, gamma {report['gamma']:.4f}; on "
            f"{report['probe']} probe behaviours: weight spread (std of weight x n) {report['weight_spread']:.4f}, "
            f"ESS {report['ess']:.4f}, score correlation with the untrained perceptron {report['correlation']:.6f}")
        if self.perceptron.mode == "full" and not report["correlation"] < MOVED_BELOW:
            self.logger.warning(
                f"BIAO: after epoch {epoch} the perceptron has not measurably moved (score correlation with its "
                f"untrained copy {report['correlation']:.6f} >= {MOVED_BELOW}, {self.stats['steps']} upper steps "
                f"so far): its weights are still those of its random initialisation")
        elif self.perceptron.mode == "full" and report["weight_spread"] < NEAR_UNIFORM_SPREAD:
            self.logger.warning(
                f"BIAO: after epoch {epoch} the weights are still within a few per cent of uniform (weight spread "
                f"{report['weight_spread']:.4f} < {NEAR_UNIFORM_SPREAD}): the model trains as Base would")
        report["upper_steps"] = len(records)
        return report

    # ---- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"perceptron": self.perceptron.state_dict(), "initial": self.initial.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "stats": dict(self.stats),
                 **{name: stream.state_dict() for name, stream in self._streams().items()}}
        if self.aux_head is not None:
            state["aux_head"] = self.aux_head.state_dict()
            state["aux_optimizer"] = self.aux_optimizer.state_dict()
            state["aux_schedule"] = self.aux_schedule.state_dict()
        return state

    def _streams(self) -> dict:
        """The batch streams of the upper level (their positions are part of its state)."""
        names = ("dev_stream", "users") if self.config["upper_batching"] == "matched" else \
            ("dev_stream", "target_stream", "source_stream")
        return {name: getattr(self, name) for name in names}

    def stream_tensors(self) -> dict:
        """The positions of this rank's batch streams as named tensors (of the same shapes on every rank)."""
        return {f"{name}.{key}": value for name, stream in self._streams().items()
                for key, value in stream.state_dict().items()}

    def load_stream_tensors(self, tensors: dict) -> None:
        for name, stream in self._streams().items():
            stream.load_state_dict({key[len(name) + 1:]: value for key, value in tensors.items()
                                    if key.startswith(name + ".")})

    def load_state_dict(self, state: dict) -> None:
        """Restore the perceptron, its optimiser, counters and batch positions (needs :meth:`bind` first)."""
        self.perceptron.load_state_dict(state["perceptron"])
        self.initial.load_state_dict(state["initial"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.stats = dict(state["stats"])
        if self.aux_head is not None and "aux_head" in state:
            self.aux_head.load_state_dict(state["aux_head"])
            self.aux_optimizer.load_state_dict(state["aux_optimizer"])
            self.aux_schedule.load_state_dict(state["aux_schedule"])
        for name, stream in self._streams().items():
            stream.load_state_dict(state[name])
