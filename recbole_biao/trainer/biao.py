"""The BIAO trainer: Algorithm 1 of Chen et al., "Cross-domain Recommendation with Behavioral Importance
Perception", WWW 2023.

Lower level (every step, RecBole's own batch loop with a ``loss_func``): the model trains on
``mean target loss + sum_j w_j * source loss_j`` with the perceptron's weights w fixed. Upper level (every
``interval`` lower steps, from a hook on the lower optimiser's step): :class:`~recbole_biao.biao.upper.UpperLevel`.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from recbole.config import Config
from recbole.data.interaction import Interaction

from recbole_biao import distributed
from recbole_biao.data.dataloader import DataNeeds
from recbole_biao.errors import ConfigError, DataError
from recbole_biao.biao import native
from recbole_biao.model.abstract import check_contract
from recbole_biao.model.layers import on_gpu
from recbole_biao.trainer.trainer import CDRTrainer
from recbole_biao.biao.upper import UpperLevel
from recbole_biao.biao.weight_log import weights_of_rows, write_weight_log

__all__ = ["BIAOTrainer"]


class BIAOTrainer(CDRTrainer):
    """Bi-level trainer: the model's optimiser sees the model's parameters only; the perceptron lives in
    :attr:`upper` (``model.perceptron`` refers to it, without making it part of the model's state dict)."""

    @classmethod
    def data_needs(cls, config: Config) -> DataNeeds:
        """The model's histories, and for the source rows (the ones it weighs) the perceptron's longer ones;
        with ``dev_strategy: split`` (paper Table 3's baseline) a fraction ``dev_split_ratio`` of the target
        training rows held out as the dev set."""
        needs = super().data_needs(config)
        length = dict(needs.history_length)
        length["source"] = max(length["source"], config["perceptron_history_length"] or 0)
        holdout = config["dev_split_ratio"] if config["dev_strategy"] == "split" else None
        return DataNeeds(length, holdout)

    def __init__(self, config: Config, model: nn.Module):
        check_contract(model, "trainer BIAO")
        if config["variant"] != "base":  # (a profile such as BIAO-paper is this trainer with other properties)
            raise ConfigError(f"trainer BIAO weights the source loss, so it needs variant 'base', "
                              f"got '{config['variant']}' (use the model name without -S / -0)")
        if list(config["train_modes"]) != ["BOTH"]:  # a staged model's phases train no joint, weightable loss
            raise ConfigError(f"trainer BIAO weights each source behaviour of a joint (BOTH) training; "
                              f"{config['model']} trains in stages {config['train_modes']} (train_epochs)")
        if getattr(model, "overlap", "user") != "user":
            raise ConfigError(f"trainer BIAO learns the weight of a source behaviour from its user's target "
                              f"behaviours (its dev loss and histories), so it needs users shared by the domains; "
                              f"these share items only: train {config['model']} with --trainer=CrossDomain")
        super().__init__(config, model)
        self.upper = UpperLevel(config, model)
        model.attach_perceptron(self.upper.perceptron)
        self.interval = config["interval"]
        self.warmup = config["upper_warmup_steps"]
        self.global_step = 0
        self.optimizer.register_step_post_hook(self._after_lower_step)
        n_params = sum(p.numel() for p in self.upper.perceptron.parameters())
        attention = ""
        if self.upper.perceptron.needs_histories:
            formulation = "torch (GPU)" if on_gpu(torch.device(self.config["device"])) else native.describe()
            attention = f"; lower-step attention: {formulation}"
        self.logger.info(f"behavioural perceptron: {n_params} parameters{attention}")

    @property
    def perceptron(self) -> nn.Module:
        return self.upper.perceptron

    # ---- lower level -------------------------------------------------------------------------------
    def lower_loss(self, interaction: Interaction) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(target loss, weighted source loss)`` of a training batch; RecBole's loop sums and backpropagates."""
        target, source = self.model.behaviour_losses(interaction)
        target = target.mean() + self.model.regularization()
        if source is None:
            return target, target.new_zeros(())
        return target, (self.upper.weights(interaction) * source).sum()

    def _after_lower_step(self, optimizer, args, kwargs):
        self.global_step += 1
        if self.global_step > self.warmup and self.global_step % self.interval == 0:
            self.upper.step(self.global_step)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        return super()._train_epoch(train_data, epoch_idx, loss_func or self.lower_loss, show_progress)

    def _end_train_epoch(self, epoch_idx):
        self.upper.end_epoch(epoch_idx)

    # ---- checkpoints, resume -----------------------------------------------------------------------
    def _state(self, epoch):
        state = super()._state(epoch)
        state["upper"] = self.upper.state_dict()
        state["global_step"] = self.global_step
        return state

    def resume_checkpoint(self, resume_file: str) -> None:
        super().resume_checkpoint(resume_file)
        if "upper" not in self._resumed:
            raise DataError(f"--resume: '{resume_file}' was saved by a run without BIAO (no upper level in it); "
                            f"resume it without --trainer=BIAO, or start the BIAO run anew")

    def _reinit(self, phase):
        if self._resumed is not None:  # here, after bind(): the upper level's batch positions need its streams
            self.global_step = self._resumed["global_step"]
            self.upper.load_state_dict(self._resumed["upper"])
        super()._reinit(phase)  # (then, with torchrun, each rank's own streams)

    def _rank_state(self) -> dict:
        return {**super()._rank_state(), **self.upper.stream_tensors()}

    def _load_rank_state(self, state: dict) -> None:
        super()._load_rank_state(state)
        self.upper.load_stream_tensors(state)

    def fit(self, train_data, valid_data=None, verbose: bool = True, saved: bool = True, show_progress: bool = False,
            callback_fn: Optional[Callable] = None) -> Tuple[float, dict]:
        self.upper.bind(train_data)
        result = super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        stats = self.upper.stats
        self.logger.info(f"BIAO upper steps: {stats['steps']} done, {stats['skipped']} skipped")
        if self.config["weight_log"] and distributed.is_main():
            option = self.config["weight_log"]
            path = option if isinstance(option, str) else self.saved_model_file[: -len(".pth")] + "-weights.csv"
            write_weight_log(self.upper, train_data.data, path, self.config["train_batch_size"],
                             self.config["weight_log_sample"], self.config["seed"])
        return result

    def evaluate_weights(self, rows, batch_size: Optional[int] = None) -> np.ndarray:
        """Normalised weights x batch size of the source training rows ``rows`` (in batches), for analyses."""
        return weights_of_rows(self.upper, self.upper.data, np.asarray(rows), batch_size or self.config["train_batch_size"])
