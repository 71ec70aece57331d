"""The paper's evaluation protocol on top of a loaded :class:`~recbole_biao.data.dataset.BiaoDataset`.

- Only users present in both domains are kept.
- Label: RecBole's ``threshold`` (``{rating: 4}``: rating > 3) in both domains. A domain without labels
  (implicit feedback: every row an interaction) gets ``implicit_negatives`` sampled negatives per positive:
  uniform over the domain's items, never an item the user interacted with, at the positive's time, drawn
  once with the seed (so valid and test negatives are fixed); they follow their positive into its split.
- Target, per user ordered by time: last behaviour = test, second to last = valid, the rest = train.
- Source training behaviours: strictly before the user's first held-out (valid, else test) target behaviour.
- History features of a behaviour: the user's most recent positive behaviours in each domain that are
  strictly earlier in time (ties excluded), most recent first.
"""

from dataclasses import dataclass, field, replace
from logging import getLogger

import numpy as np

from recbole_biao.data.dataset import DOMAINS
from recbole_biao.errors import DataError

__all__ = ["Behaviours", "HistoryIndex", "CDRData", "leave_one_out", "sample_negatives", "build_cdr_data"]


@dataclass
class Behaviours:
    """Rows of one domain: ``[n]`` arrays of user, item, label (float32) and time (float64)."""

    user: np.ndarray
    item: np.ndarray
    label: np.ndarray
    time: np.ndarray

    def __len__(self):
        return len(self.user)

    def take(self, index):
        return Behaviours(self.user[index], self.item[index], self.label[index], self.time[index])

    @staticmethod
    def concat(parts):
        return Behaviours(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("user", "item", "label", "time")))


class HistoryIndex:
    """The positive behaviours of one domain, sorted by (user, time), for history look-ups.

    Args:
        positives (Behaviours): the positive behaviours of the domain (all of them: a history only ever
            reaches behaviours strictly earlier than the one it describes).
    """

    def __init__(self, positives):
        order = np.lexsort((positives.time, positives.user))
        self.user = positives.user[order]
        self.time = positives.time[order]
        self.item = positives.item[order]

    def bounds(self, user, time):
        """Return ``(start, end)`` so that ``item[start:end]`` are the positives of ``user`` with time < ``time``."""
        start = np.searchsorted(self.user, user, side="left")
        # Rank all timestamps together so that (user, time) becomes one sortable int64 key.
        times, inverse = np.unique(np.concatenate([self.time, time]), return_inverse=True)
        span = len(times) + 1
        keys = self.user.astype(np.int64) * span + inverse[: len(self.time)]
        query = np.asarray(user, dtype=np.int64) * span + inverse[len(self.time):]
        end = np.searchsorted(keys, query, side="left")
        return start.astype(np.int64), end.astype(np.int64)

    def gather(self, start, end, length):
        """Items of the histories ``item[start:end]``, most recent first, cut to ``length`` and 0-padded.

        Returns:
            (np.ndarray, np.ndarray): ``[n, length]`` item IDs and ``[n]`` history lengths.
        """
        idx = end[:, None] - 1 - np.arange(length)[None, :]
        valid = idx >= start[:, None]
        items = np.where(valid, self.item[np.clip(idx, 0, None)] if len(self.item) else 0, 0)
        return items, valid.sum(axis=1)


@dataclass
class CDRData:
    """Everything the loaders need: behaviours per split, their history bounds and item categories.

    ``splits`` maps ``train_source``, ``train_target``, ``valid``, ``test`` to :class:`Behaviours`
    (valid and test are target behaviours). ``bounds[split][domain]`` holds the ``(start, end)``
    history bounds of each row in that domain's :class:`HistoryIndex`.
    """

    splits: dict
    history: dict
    bounds: dict
    item_category: dict
    num_categories: dict
    stats: dict = field(default_factory=dict)
    tokens: dict = field(default_factory=dict)

    def split_domain(self, split):
        return "source" if split == "train_source" else "target"

    def with_subsets(self, split, subsets):
        """A copy in which the rows ``index`` of the target ``split`` form a new split, for each
        ``name: index`` of ``subsets``; this object is left unchanged."""
        if self.split_domain(split) != "target":
            raise ValueError("only target splits can be subdivided")
        copy = replace(self, splits=dict(self.splits), bounds=dict(self.bounds))
        for name, index in subsets.items():
            copy.splits[name] = self.splits[split].take(index)
            copy.bounds[name] = {d: (start[index], end[index]) for d, (start, end) in self.bounds[split].items()}
        return copy


def leave_one_out(user, time):
    """Per user, ordered by time (ties by row order): last = test, second to last = valid, rest = train.

    Returns:
        np.ndarray: ``[n]`` int8 codes, 0 train, 1 valid, 2 test.
    """
    n = len(user)
    order = np.lexsort((np.arange(n), time, user))
    sorted_user = user[order]
    is_last = np.append(sorted_user[1:] != sorted_user[:-1], True)
    # group_end[i]: position of the last row of row i's user; rank from the end within the user.
    group_end = np.minimum.accumulate(np.where(is_last, np.arange(n), n)[::-1])[::-1]
    rank_from_end = group_end - np.arange(n)
    codes = np.zeros(n, dtype=np.int8)
    codes[order] = np.where(rank_from_end == 0, 2, np.where(rank_from_end == 1, 1, 0))
    return codes


def sample_negatives(positives, per_positive, seed=0, max_rounds=100):
    """``per_positive`` negatives for each row of ``positives``: uniform over the items of these rows, never
    an item the user has a row with, at the positive's time.

    Returns:
        (Behaviours, np.ndarray): the negatives (label 0) and the index of the positive each belongs to.
    """
    rng = np.random.default_rng(seed)
    items = np.unique(positives.item)
    span = int(items.max()) + 1
    seen = np.unique(positives.user.astype(np.int64) * span + positives.item)
    parent = np.repeat(np.arange(len(positives)), per_positive)
    user = positives.user[parent]
    item = items[rng.integers(len(items), size=len(parent))]
    for _ in range(max_rounds):
        bad = np.isin(user.astype(np.int64) * span + item, seen)
        if not bad.any():
            break
        item[bad] = items[rng.integers(len(items), size=int(bad.sum()))]
    ok = ~np.isin(user.astype(np.int64) * span + item, seen)  # users who interacted with (nearly) every item
    negatives = Behaviours(user[ok], item[ok], np.zeros(int(ok.sum()), dtype=np.float32), positives.time[parent][ok])
    return negatives, parent[ok]


def _domain_behaviours(dataset, domain):
    ds = dataset.domain_dataset(domain)
    df = ds.inter_feat
    label_field = ds.label_field
    if label_field in df:
        label = df[label_field].to_numpy(dtype=np.float32)
    else:  # implicit feedback: every row is a positive
        label = np.ones(len(df), dtype=np.float32)
    if ds.time_field not in df:
        raise DataError(f"{domain}_domain: the .inter file has no time column '{ds.time_field}'; "
                        f"the protocol orders behaviours by time")
    return Behaviours(df[ds.uid_field].to_numpy(np.int64), df[ds.iid_field].to_numpy(np.int64), label,
                      df[ds.time_field].to_numpy(np.float64))


def build_cdr_data(dataset):
    """Apply the protocol to a :class:`BiaoDataset` and precompute history bounds for every row."""
    logger = getLogger()
    shared = dataset.num_overlap_user  # users 1 .. shared-1 are in both domains
    if shared <= 1:
        raise DataError("the two domains share no user; cross-domain training needs users present in both")
    domains, negatives, stats = {}, {}, {}
    for domain in DOMAINS:
        rows = _domain_behaviours(dataset, domain)
        keep = (rows.user > 0) & (rows.user < shared)
        stats[f"{domain}_rows"] = len(rows)
        stats[f"{domain}_rows_user_not_shared"] = int((~keep).sum())
        domains[domain] = rows.take(keep)
        ds = dataset.domain_dataset(domain)
        if ds.label_field not in ds.inter_feat:
            negatives[domain] = sample_negatives(domains[domain], dataset.config["implicit_negatives"] or 1,
                                                 dataset.config["seed"] or 0)
            stats[f"{domain}_sampled_negatives"] = len(negatives[domain][0])

    target = domains["target"]
    codes = leave_one_out(target.user, target.time)
    if "target" in negatives:
        rows, parent = negatives["target"]
        target, codes = Behaviours.concat([target, rows]), np.concatenate([codes, codes[parent]])
    splits = {"train_target": target.take(codes == 0), "valid": target.take(codes == 1),
              "test": target.take(codes == 2)}
    # Source rows count for training only before the user's first held-out target behaviour.
    held_out = target.take(codes > 0)
    cutoff = np.full(shared, np.inf)
    np.minimum.at(cutoff, held_out.user, held_out.time)
    source = domains["source"]
    if "source" in negatives:
        source = Behaviours.concat([source, negatives["source"][0]])
    before = source.time < cutoff[source.user]
    splits["train_source"] = source.take(before)
    stats["source_rows_at_or_after_cutoff"] = int((~before).sum())
    for name, rows in splits.items():
        stats[f"{name}_rows"] = len(rows)
    if len(splits["train_target"]) == 0:
        raise DataError("no target training behaviour is left after the leave-one-out split "
                        "(every shared user has at most two target behaviours)")

    history = {d: HistoryIndex(domains[d].take(domains[d].label > 0)) for d in DOMAINS}
    bounds = {name: {d: history[d].bounds(rows.user, rows.time) for d in DOMAINS} for name, rows in splits.items()}
    logger.info("protocol: " + ", ".join(f"{k}={v}" for k, v in stats.items()))
    tokens = {"user": dataset.id2token("source", "user"),
              **{f"{d}_item": dataset.id2token(d, "item") for d in DOMAINS},
              **{f"{d}_category": np.array(dataset.category_tokens[d], dtype=object) for d in DOMAINS}}
    return CDRData(splits, history, bounds, dataset.item_category, dataset.num_categories, stats, tokens)
