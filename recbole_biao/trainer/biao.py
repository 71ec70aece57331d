"""The BIAO trainer: Algorithm 1 of Chen et al., "Cross-domain Recommendation with Behavioral Importance
Perception", WWW 2023.

Lower level (every step): the model trains on ``mean target loss + sum_j w_j * source loss_j`` with the
perceptron's weights w fixed. Upper level (every ``interval`` steps): the perceptron takes one SGD step on
the implicit gradient of the target loss of a dev batch (:mod:`recbole_biao.hypergradient`), computed at a
fresh training batch. Dev batches come from a reshuffled pass over the same target training set
(reorder-and-reuse), or from a held-out fraction of it (``dev_strategy: split``).
"""

import copy
import csv
import os
import time

import numpy as np
import torch
from recbole.utils import set_color
from tqdm import tqdm

from recbole.data.interaction import Interaction

from recbole_biao.data.dataloader import BatchStream, make_batch
from recbole_biao.data.dataset import DOMAINS
from recbole_biao.errors import ConfigError
from recbole_biao.hypergradient import clip_and_check, implicit_hypergradient
from recbole_biao.model.abstract import check_contract
from recbole_biao.model.layers import history_mask
from recbole_biao.model.perceptron import BehaviouralPerceptron
from recbole_biao.trainer.trainer import CDRTrainer

__all__ = ["BIAOTrainer"]


class BIAOTrainer(CDRTrainer):
    """Bi-level trainer with a :class:`BehaviouralPerceptron` attached to the model.

    The model's optimiser gets ``model.model_parameters()`` only; the perceptron has its own SGD optimiser.
    """

    def __init__(self, config, model):
        check_contract(model, "trainer BIAO")
        if config["variant"] != "base":
            raise ConfigError(f"trainer BIAO weights the source loss, so it needs variant 'base', "
                              f"got '{config['variant']}' (use the model name without -S / -0)")
        item_dim = model.item_embedding(torch.zeros(1, dtype=torch.long, device=config["device"]), "source").shape[-1]
        self.perceptron = BehaviouralPerceptron(
            item_dim, config["perceptron_heads"], list(config["perceptron_hidden_size"]), config["perceptron_norm"],
            config["use_global"], config["use_user"]).to(config["device"])
        model.attach_perceptron(self.perceptron)
        super().__init__(config, model)
        self.upper_optimizer = torch.optim.SGD(self.perceptron.parameters(), lr=config["upper_learning_rate"],
                                               weight_decay=config["upper_weight_decay"])
        self.interval = config["interval"]
        self.perceptron_length = config["perceptron_history_length"]
        self.global_step = 0
        self.upper_stats = {"steps": 0, "skipped": 0, "last_norm": 0.0}
        self.seconds = {"perceptron": 0.0, "upper": 0.0}  # time in the lower steps' perceptron forward, in upper steps
        self.aux_head = copy.deepcopy(getattr(model, model.TARGET_HEAD)) if config["aux_head"] else None
        self.streams = {}
        n_params = sum(p.numel() for p in self.perceptron.parameters())
        self.logger.info(f"behavioural perceptron: {n_params} parameters (item embedding size {item_dim})")

    def _build_optimizer(self, **kwargs):
        kwargs.setdefault("params", self.model.model_parameters())
        return super()._build_optimizer(**kwargs)

    # ---- the perceptron's inputs -------------------------------------------------------------------
    def perceptron_inputs(self, interaction):
        """The detached embedding of the batch's source items, and per domain their users' histories as
        ``(embeddings of the distinct history items, index into them, mask)``."""
        model = self.model
        item_emb = model.item_embedding(interaction["source_item_id"], "source")
        histories = {}
        for domain in DOMAINS:
            items, length = model.history(interaction, "source", domain, self.perceptron_length)
            distinct, index = torch.unique(items, return_inverse=True)
            histories[domain] = (model.item_embedding(distinct, domain), index, history_mask(items, length))
        return item_emb, histories

    def source_weights(self, interaction):
        """Weights ``[Bs]`` of the batch's source behaviours (differentiable w.r.t. the perceptron only)."""
        return self.perceptron(*self.perceptron_inputs(interaction))

    def _train_loss(self, interaction, weights_grad=False):
        target, source = self.model.behaviour_losses(interaction)
        target = target.mean() + self.model.regularization()
        if source is None:
            return target, torch.zeros((), device=target.device)
        start = time.perf_counter()
        with torch.set_grad_enabled(weights_grad):
            weights = self.source_weights(interaction)
        if not weights_grad:
            self.seconds["perceptron"] += time.perf_counter() - start
        return target, (weights * source).sum()

    # ---- lower level -------------------------------------------------------------------------------
    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self.model.train()
        batches = tqdm(train_data, total=len(train_data), ncols=100, desc=set_color(f"Train {epoch_idx:>5}", "pink")) \
            if show_progress else train_data
        totals = [0.0, 0.0]
        for interaction in batches:
            interaction = interaction.to(self.device)
            target_loss, source_loss = self._train_loss(interaction)
            loss = target_loss + source_loss
            self._check_nan(loss)
            self.optimizer.zero_grad()
            loss.backward()
            if self.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.model.model_parameters(), **self.clip_grad_norm)
            self.optimizer.step()
            totals[0] += target_loss.item()
            totals[1] += source_loss.item()
            self.global_step += 1
            if self.global_step % self.interval == 0:
                start = time.perf_counter()
                self._upper_step()
                self.seconds["upper"] += time.perf_counter() - start
        self.logger.debug(f"upper steps: {self.upper_stats}")
        return tuple(totals)

    # ---- upper level -------------------------------------------------------------------------------
    def _make_streams(self, train_data):
        data, size, seed = train_data.data, self.config["train_batch_size"], self.config["seed"]
        length, source_length = train_data.history_length, train_data.source_history_length
        dev_split = "dev" if self.config["dev_strategy"] == "split" else train_data.target_split
        self.streams = {
            "dev": BatchStream(data, dev_split, size, length, seed + 2),
            "target": BatchStream(data, train_data.target_split, size, length, seed + 3),
            "source": BatchStream(data, "train_source", size, source_length, seed + 4),
        }

    def _dev_loss(self, dev):
        model = self.model
        if self.aux_head is None:
            return model.domain_losses(dev, "target").mean()
        trained_head = getattr(model, model.TARGET_HEAD)
        setattr(model, model.TARGET_HEAD, self.aux_head)
        try:
            self._fit_aux_head()
            return model.domain_losses(dev, "target").mean()
        finally:
            setattr(model, model.TARGET_HEAD, trained_head)

    def _fit_aux_head(self):
        """Reference-implementation trick: train the auxiliary target head on dev batches (body fixed)."""
        optimizer = torch.optim.SGD(self.aux_head.parameters(), lr=self.config["learning_rate"])
        for _ in range(self.config["aux_head_steps"]):
            batch = self.streams["dev"].next_batch().to(self.device)
            loss = self.model.domain_losses(batch, "target").mean()
            optimizer.zero_grad()
            grads = torch.autograd.grad(loss, list(self.aux_head.parameters()))
            for p, g in zip(self.aux_head.parameters(), grads):
                p.grad = g
            optimizer.step()

    def _upper_step(self):
        dev = self.streams["dev"].next_batch().to(self.device)
        fresh = self.streams["target"].next_fields()
        fresh.update(self.streams["source"].next_fields(len(fresh["target_item_id"])))
        fresh = Interaction(fresh).to(self.device)
        dev_loss = self._dev_loss(dev)
        # the Hessian-vector products differentiate this graph twice, which cuDNN's RNNs (DASL's GRUs) cannot
        with torch.backends.cudnn.flags(enabled=False):
            train_loss = sum(self._train_loss(fresh, weights_grad=True))
        hyper = list(self.perceptron.parameters())
        grads = implicit_hypergradient(dev_loss, train_loss, self.model.non_head_parameters(), hyper,
                                       self.config["hypergrad_method"], self.config["neumann_iterations"],
                                       self.config["neumann_alpha"])
        grads, norm = clip_and_check(grads, self.config["hypergrad_clip"])
        self.upper_stats["last_norm"] = norm
        if grads is None:
            self.upper_stats["skipped"] += 1
            self.logger.warning(f"step {self.global_step}: hypergradient not finite (norm {norm}); upper step skipped")
            return
        self.upper_optimizer.zero_grad()
        for p, g in zip(hyper, grads):
            p.grad = g
        self.upper_optimizer.step()
        self.upper_stats["steps"] += 1

    # ---- checkpoints, resume -----------------------------------------------------------------------
    def _state(self, epoch):
        state = super()._state(epoch)
        state["upper_optimizer"] = self.upper_optimizer.state_dict()
        state["global_step"] = self.global_step
        state["upper_stats"] = dict(self.upper_stats)
        state["streams"] = {name: s.state_dict() for name, s in self.streams.items()}
        if self.aux_head is not None:
            state["aux_head"] = self.aux_head.state_dict()
        return state

    def _load_state(self, checkpoint):
        super()._load_state(checkpoint)
        self.upper_optimizer.load_state_dict(checkpoint["upper_optimizer"])
        if self.aux_head is not None and "aux_head" in checkpoint:
            self.aux_head.load_state_dict(checkpoint["aux_head"])

    def _reinit(self, phase):
        super()._reinit(phase)
        if self._resumed is not None:
            self.global_step = self._resumed["global_step"]
            self.upper_stats = dict(self._resumed["upper_stats"])
            for name, state in self._resumed["streams"].items():
                self.streams[name].load_state_dict(state)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._make_streams(train_data)
        result = super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        self.logger.info(f"BIAO upper steps: {self.upper_stats['steps']} done, {self.upper_stats['skipped']} skipped")
        if self.config["weight_log"]:
            self.write_weight_log(train_data.data)
        return result

    # ---- weight logging ----------------------------------------------------------------------------
    @torch.no_grad()
    def write_weight_log(self, data):
        """Write the learned weight of the source training behaviours (or a sample) to a CSV.

        ``weight`` is the behaviour's weight times the batch size (1 = the uniform weight of the Base model
        when gamma = 1), computed in batches of ``train_batch_size``; ``score`` is the batch-independent
        score g1 * g2 before normalisation.
        """
        option = self.config["weight_log"]
        path = option if isinstance(option, str) else self.saved_model_file[: -len(".pth")] + "-weights.csv"
        rows = data.splits["train_source"]
        rng = np.random.default_rng(self.config["seed"])
        index = rng.permutation(len(rows))
        if self.config["weight_log_sample"]:
            index = index[: self.config["weight_log_sample"]]
        counts = {d: np.bincount(data.splits[s].user, minlength=len(data.tokens["user"]))
                  for d, s in (("source", "train_source"), ("target", "train_target"))}
        size = self.config["train_batch_size"]
        self.model.eval()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["user", "item", "category", "source_history_length", "target_history_length",
                             "user_source_behaviours", "user_target_behaviours", "score", "weight",
                             "recent_source_items", "recent_target_items"])
            for begin in range(0, len(index), size):
                part = np.sort(index[begin:begin + size])
                batch = Interaction(make_batch(data, "train_source", part, self.perceptron_length)).to(self.device)
                scores = self.perceptron.scores(*self.perceptron_inputs(batch))
                weights = (self.perceptron.normalise(scores) * len(part)).cpu().numpy()
                scores = scores.cpu().numpy()
                users, items = rows.user[part], rows.item[part]
                bounds = data.bounds["train_source"]
                recent = {}  # the user's five most recent positives of each domain before the behaviour
                for d in DOMAINS:
                    ids, _ = data.history[d].gather(bounds[d][0][part], bounds[d][1][part], 5)
                    recent[d] = ["|".join(data.tokens[f"{d}_item"][x] for x in row if x) for row in ids]
                for k, i in enumerate(part):
                    writer.writerow([data.tokens["user"][users[k]], data.tokens["source_item"][items[k]],
                                     data.tokens["source_category"][data.item_category["source"][items[k]]],
                                     bounds["source"][1][i] - bounds["source"][0][i],
                                     bounds["target"][1][i] - bounds["target"][0][i], counts["source"][users[k]],
                                     counts["target"][users[k]], f"{scores[k]:.6g}", f"{weights[k]:.6g}",
                                     recent["source"][k], recent["target"][k]])
        self.model.train()
        self.logger.info(f"learned source weights of {len(index)} behaviours written to {path}")
        return path
