"""Controls for learn-then-select's cutoffs: keep masks that drop as many source interactions as a candidate,
chosen without the learned weights (``benchmarks/bench_select_random.py``). A cutoff that scores no better than
these has not selected anything.

Each function returns a boolean mask over the rows of a scores file (``<stem>-scores.csv``: user, item,
timestamp, weight, keep); :func:`write_mask` (the pipeline's own) writes it as a keep file.
"""

import numpy as np

from recbole_biao.biao.selection import random_keep, write_mask  # (the pipeline's own control and keep files)

__all__ = ["random_keep", "per_user_keep", "rare_items_keep", "item_count_rho", "seed_agreement", "write_mask"]


def per_user_keep(users: np.ndarray, keep: np.ndarray, seed: int) -> np.ndarray:
    """Every user loses as many rows as ``keep`` takes from them, drawn at random among the user's rows: what
    the weights say about *whose* source data to drop, without what they say about *which* behaviours."""
    rng = np.random.default_rng(seed + 11)
    out = np.ones(len(users), dtype=bool)
    order = np.argsort(users, kind="stable")
    starts = np.flatnonzero(np.r_[True, users[order][1:] != users[order][:-1], True])
    for start, end in zip(starts[:-1], starts[1:]):
        rows = order[start:end]
        n_drop = int((~keep[rows]).sum())
        if n_drop:  # (a user who loses nothing draws nothing: the draws of the others do not depend on them)
            out[rng.permutation(rows)[:n_drop]] = False
    return out


def _item_counts(items: np.ndarray):
    """``(inverse, counts)``: each row's item index and every item's number of rows."""
    _, inverse, counts = np.unique(items, return_inverse=True, return_counts=True)
    return inverse, counts


def rare_items_keep(items: np.ndarray, n_drop: int, seed: int) -> np.ndarray:
    """``n_drop`` rows dropped, those of the items with the fewest rows first (ties between items at random):
    a popularity filter of the same size."""
    inverse, counts = _item_counts(items)
    tie = np.random.default_rng(seed + 13).random(len(counts))
    order = np.lexsort((tie[inverse], counts[inverse]))  # by the item's count, then its random tie-break
    keep = np.ones(len(items), dtype=bool)
    keep[order[:n_drop]] = False
    return keep


def item_count_rho(weights: np.ndarray, items: np.ndarray) -> float:
    """Spearman correlation of the weights with each row's item's number of rows."""
    from scipy.stats import spearmanr

    inverse, counts = _item_counts(items)
    return float(spearmanr(weights, counts[inverse]).correlation)


def seed_agreement(scores: dict, by=None) -> list:
    """Spearman correlations between every two seeds' scores of the same rows (``scores``: seed -> Series indexed
    by user, item and timestamp), or of the same users' or items' mean scores (``by``: "user" or "item"): near 0,
    the score belongs to the training, not to the row (or user, or item), and no ranking by it carries over."""
    from scipy.stats import spearmanr

    seeds = sorted(scores)
    mine = {s: scores[s] if by is None else scores[s].groupby(level=by).mean() for s in seeds}
    return [float(spearmanr(*mine[a].align(mine[b], join="inner")).correlation)
            for i, a in enumerate(seeds) for b in seeds[i + 1:]]
