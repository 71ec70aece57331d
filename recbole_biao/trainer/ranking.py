"""The ranking protocol's evaluation (``eval_args: {mode: full}`` or ``uniN``): where each held-out target item
ranks among the candidates the model scores for its user.

Each positive valid (test) behaviour is one query: its user, its features as of its time (the histories), and
its item. Candidates are every target item (``full``) or the item and N items drawn uniformly (``uniN``, the same
draw at every evaluation); the user's known items are never candidates: the positive target training
behaviours, and for the test split the valid one too (RecBole's full sort masks a user's history alike). A tie
with the held-out item counts against it, so a model that predicts one constant ranks it last, not first.
"""

from typing import Tuple

import numpy as np
import torch
from recbole.data.interaction import Interaction

from recbole_biao.data.dataloader import concat_ranges, make_batch

__all__ = ["known_items", "draw_candidates", "rank_queries"]


def known_items(data, split: str, bound: int) -> np.ndarray:
    """Sorted ``user * bound + item`` keys (``bound``: above every item ID) of the items a query of ``split`` must
    not rank against: the positive target training behaviours (and the valid ones for the test split)."""
    parts = ["train_target"] + (["valid"] if split == "test" else [])
    rows = [data.splits[p] for p in parts]
    return np.unique(np.concatenate([r.user[r.label > 0].astype(np.int64) * bound + r.item[r.label > 0]
                                     for r in rows]))


def _bound(data) -> int:
    return 1 + max(int(r.item.max()) for r in data.splits.values() if len(r))


def draw_candidates(users: np.ndarray, positives: np.ndarray, known: np.ndarray, num_items: int, bound: int,
                    negatives: int, seed: int) -> np.ndarray:
    """``[Q, 1 + negatives]`` candidate items per query: its own item first, then ``negatives`` target items
    drawn uniformly among ``1 .. num_items - 1`` that are neither known to the user nor the query's item."""
    rng = np.random.default_rng(seed)
    drawn = rng.integers(1, num_items, size=(len(users), negatives))
    for _ in range(100):
        keys = users[:, None].astype(np.int64) * bound + drawn
        bad = np.isin(keys, known) | (drawn == positives[:, None])
        if not bad.any():
            break
        drawn[bad] = rng.integers(1, num_items, size=int(bad.sum()))
    return np.concatenate([positives[:, None], drawn], axis=1)


@torch.no_grad()
def rank_queries(model, eval_data, negatives: int, device, seed: int = 0) -> Tuple[np.ndarray, float]:
    """``(ranks, spread)``: the 1-based rank of each query's item among its candidates, and the spread (max -
    min) of all scores computed (0: the model predicts one constant). ``negatives`` 0: full sort."""
    data, split = eval_data.data, eval_data.split
    rows = data.splits[split]
    queries = np.flatnonzero(rows.label > 0)
    num_items = int(model.target_num_items)
    if len(queries) == 0:
        return np.zeros(0), 0.0
    bound = _bound(data)
    known = known_items(data, split, bound)
    users, positives = rows.user[queries].astype(np.int64), rows.item[queries].astype(np.int64)
    if negatives:
        candidates = draw_candidates(users, positives, known, num_items, bound, negatives, seed)
    else:  # every target item, one row of candidates shared by all queries
        every = torch.arange(1, num_items, device=device)
        first = np.searchsorted(known, users * bound)  # each user's known items: known[first:last] % bound
        last = np.searchsorted(known, (users + 1) * bound)
    width = 1 + negatives if negatives else num_items - 1
    per_chunk = max(1, model.CANDIDATE_SCORES_PER_CALL // width)
    # one array written in place: a small array kept per chunk pinned the heap above each chunk's freed
    # temporaries, and a full sort on Movies -> Books grew to 9.6 GB
    ranks, low, high = np.empty(len(queries), dtype=np.int64), np.inf, -np.inf
    for begin in range(0, len(queries), per_chunk):
        part = slice(begin, begin + per_chunk)
        batch = Interaction({k: v.to(device) for k, v in
                             make_batch(data, split, queries[part], eval_data.history_length).items()})
        items = torch.from_numpy(candidates[part]).to(device) if negatives else every
        scores = model.candidate_scores(batch, items).float()
        low, high = min(low, float(scores.min())), max(high, float(scores.max()))
        # the column of the query's own item: first among drawn candidates, item - 1 in a full sort
        own = torch.from_numpy(np.zeros(len(scores), dtype=np.int64) if negatives else positives[part] - 1).to(device)
        ahead = scores >= scores.gather(1, own[:, None])
        if not negatives:  # the user's known items are no candidates
            counts = last[part] - first[part]
            at = concat_ranges(first[part], last[part])
            rows_of = torch.from_numpy(np.repeat(np.arange(len(counts)), counts)).to(device)
            ahead[rows_of, torch.from_numpy(known[at] % bound - 1).to(device)] = False
        ahead.scatter_(1, own[:, None], False)
        ranks[part] = (1 + ahead.sum(1)).cpu().numpy()
    return ranks, high - low
