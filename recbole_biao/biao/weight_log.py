"""The learned weights of a BIAO run's source training behaviours, as a CSV for analyses
(:mod:`recbole_biao.experiments.weights`).

Columns: ``user``, ``item``, ``timestamp`` (the three identify the row in the original files, as in the keep
files of learn-then-select: (user, item) alone repeats on real data), ``category``, ``source_history_length`` /
``target_history_length`` (the user's earlier positives at that time), ``user_source_behaviours`` /
``user_target_behaviours`` (training behaviours per domain), ``score`` (g1 * g2, batch-independent),
``initial_score`` (the untrained perceptron's score on the same inputs: their correlation tells learning from
initialisation), ``weight`` (the normalised weight times the batch size: 1 is the Base model's uniform weight
when gamma = 1), and the users' five most recent items of each domain.
"""

from __future__ import annotations

import csv
from typing import Optional
from logging import getLogger

import numpy as np
import torch
from recbole.data.interaction import Interaction

from recbole_biao.data.dataloader import make_batch
from recbole_biao.data.dataset import DOMAINS
from recbole_biao.files import atomic_path

__all__ = ["COLUMNS", "scores_of_rows", "batch_weights", "weights_of_rows", "write_weight_log"]

COLUMNS = ["user", "item", "timestamp", "category", "source_history_length", "target_history_length",
           "user_source_behaviours", "user_target_behaviours", "score", "initial_score", "weight",
           "recent_source_items", "recent_target_items"]


@torch.no_grad()
def scores_of_rows(upper, data, rows: np.ndarray, chunk: int = 4096, perceptron=None) -> torch.Tensor:
    """The scores (batch-independent) of the source training ``rows`` by ``perceptron`` (default: the upper
    level's learned one), in chunks of ``chunk``, on the upper level's device."""
    perceptron = upper.perceptron if perceptron is None else perceptron
    parts = [perceptron.scores(*upper.inputs(Interaction(make_batch(
        data, "train_source", rows[begin:begin + chunk], upper.history_length)).to(upper.device)))
        for begin in range(0, len(rows), chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, device=upper.device)


@torch.no_grad()
def batch_weights(perceptron, scores: torch.Tensor, batch_size: int) -> np.ndarray:
    """Normalised weights x batch size of ``scores`` cut into consecutive batches of ``batch_size`` (the last
    one shorter), every full batch normalised at once."""
    full = len(scores) - len(scores) % batch_size
    parts = [perceptron.normalise(scores[:full].view(-1, batch_size)).reshape(-1) * batch_size] if full else []
    if full < len(scores):
        parts.append(perceptron.normalise(scores[full:]) * (len(scores) - full))
    return torch.cat(parts).double().cpu().numpy() if parts else np.zeros(0)


def weights_of_rows(upper, data, rows: np.ndarray, batch_size: int) -> np.ndarray:
    """Weights x batch size of the source training ``rows``, normalised within consecutive batches of
    ``batch_size`` (the scores do not depend on the batch: each row is scored once)."""
    return batch_weights(upper.perceptron, scores_of_rows(upper, data, np.asarray(rows)), batch_size)


def write_weight_log(upper, data, path: str, batch_size: int, sample: Optional[int] = None, seed: int = 0) -> str:
    """Write the weights of the source training behaviours (all, or a random ``sample``) to ``path``.

    Batches are random subsets of the logged rows, as in training. The file is written under a temporary name
    and renamed, so an interrupted run never leaves a partial CSV.
    """
    rows = data.splits["train_source"]
    index = np.random.default_rng(seed).permutation(len(rows))
    if sample:
        index = index[:sample]
    counts = {d: np.bincount(data.splits[s].user, minlength=data.num_users)
              for d, s in (("source", "train_source"), ("target", "train_target"))}
    bounds = data.bounds["train_source"]
    upper.model.eval()
    scores = scores_of_rows(upper, data, index)
    weights = batch_weights(upper.perceptron, scores, batch_size)  # batches: consecutive rows of ``index``
    initial = scores_of_rows(upper, data, index, perceptron=upper.initial).cpu().numpy()
    scores = scores.cpu().numpy()
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for begin in range(0, len(index), batch_size):
            part = index[begin:begin + batch_size]
            users, items = rows.user[part], rows.item[part]
            recent = {}  # the user's five most recent positives of each domain before the behaviour
            for d in DOMAINS:
                ids, _ = data.history[d].gather(bounds[d][0][part], bounds[d][1][part], 5)
                recent[d] = ["|".join(data.tokens[f"{d}_item"][x] for x in row if x) for row in ids]
            for k, i in enumerate(part):
                j = begin + k
                writer.writerow([data.tokens["user"][users[k]], data.tokens["source_item"][items[k]],
                                 repr(float(rows.time[i])),
                                 data.tokens["source_category"][data.item_category["source"][items[k]]],
                                 bounds["source"][1][i] - bounds["source"][0][i],
                                 bounds["target"][1][i] - bounds["target"][0][i], counts["source"][users[k]],
                                 counts["target"][users[k]], f"{scores[j]:.6g}", f"{initial[j]:.6g}",
                                 f"{weights[j]:.6g}", recent["source"][k], recent["target"][k]])
    upper.model.train()
    getLogger().info(f"learned source weights of {len(index)} behaviours written to {path}")
    return path
