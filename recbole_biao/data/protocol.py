"""The paper's evaluation protocol on top of a loaded :class:`~recbole_biao.data.dataset.BiaoDataset`.

- Only users present in both domains are kept.
- Label: RecBole's ``threshold`` (``{rating: 4}``: rating > 3) in both domains. A domain without labels
  (implicit feedback: every row an interaction) gets ``implicit_negatives`` sampled negatives per positive,
  never an item the user interacted with, at the positive's time, drawn once with the seed (so valid and
  test negatives are fixed), in their positive's split: valid and test negatives uniform over the domain's
  items, training negatives uniform over the items with a training positive (``negative_pool: train``;
  ``all``: over every item, which teaches items first seen in valid/test as negatives only).
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

__all__ = ["Behaviours", "HistoryIndex", "CDRData", "duplicate_rows", "leave_one_out", "sample_negatives", "with_negatives",
           "selected_rows", "build_cdr_data"]


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

    @property
    def num_users(self):
        """Size of the user ID space (IDs of every split are below it)."""
        return 1 + max((int(rows.user.max()) for rows in self.splits.values() if len(rows)), default=0)

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


def duplicate_rows(user, item, time):
    """``[n]`` bool: rows whose (user, item, time) occurs again in a later row."""
    order = np.lexsort((np.arange(len(user)), time, item, user))
    key = np.stack([user[order], item[order], time[order]]).astype(np.float64)  # ids and times are exact here
    repeated = np.zeros(len(user), dtype=bool)
    repeated[order[:-1]] = (np.diff(key, axis=1) == 0).all(axis=0)
    return repeated


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


def sample_negatives(positives, per_positive, seed=0, items=None, seen=None, max_rounds=100):
    """``per_positive`` negatives for each row of ``positives``, uniform over ``items`` (default: the items of
    these rows), never an item the user has a positive with (in ``seen``, default ``positives``), at the
    positive's time.

    Returns:
        (Behaviours, np.ndarray): the negatives (label 0) and the index of the positive each belongs to.
    """
    rng = np.random.default_rng(seed)
    items = np.unique(positives.item) if items is None else np.asarray(items)
    seen = positives if seen is None else seen
    if len(positives) == 0 or len(items) == 0:
        return positives.take(np.empty(0, dtype=np.int64)), np.empty(0, dtype=np.int64)
    span = int(max(items.max(), seen.item.max())) + 1
    seen_keys = np.unique(seen.user.astype(np.int64) * span + seen.item)
    parent = np.repeat(np.arange(len(positives)), per_positive)
    user = positives.user[parent]
    item = items[rng.integers(len(items), size=len(parent))]
    for _ in range(max_rounds):
        bad = np.isin(user.astype(np.int64) * span + item, seen_keys)
        if not bad.any():
            break
        item[bad] = items[rng.integers(len(items), size=int(bad.sum()))]
    ok = ~np.isin(user.astype(np.int64) * span + item, seen_keys)  # users who interacted with (nearly) every item
    negatives = Behaviours(user[ok], item[ok], np.zeros(int(ok.sum()), dtype=np.float32), positives.time[parent][ok])
    return negatives, parent[ok]


def with_negatives(rows, codes, per_positive, pool, seed, seen=None):
    """Sampled negatives for implicit rows (all positives) split by ``codes`` (0 = training): training
    negatives come from the items with a training positive (``pool: train``: the catalogue as known at
    training time, so an item first seen in valid or test is never taught as a negative) or from every item
    (``pool: all``); valid and test negatives from every item; never an item of the user's in ``seen`` (default
    ``rows``). Returns the rows with their negatives and codes."""
    train = codes == 0
    every = np.unique(rows.item)
    pools = {True: np.unique(rows.item[train]) if pool == "train" else every, False: every}
    parts, part_codes = [rows], [codes]
    for is_train, offset in ((True, 0), (False, 1)):
        index = np.flatnonzero(train == is_train)
        negatives, parent = sample_negatives(rows.take(index), per_positive, seed + offset, pools[is_train],
                                             rows if seen is None else seen)
        parts.append(negatives)
        part_codes.append(codes[index][parent])
    return Behaviours.concat(parts), np.concatenate(part_codes)


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


KEEP_COLUMNS = ("user", "item", "timestamp", "keep")


def selected_rows(path, rows, user_ids, item_ids):
    """``[n]`` bool: which of the source behaviours ``rows`` a keep file (CSV with the columns ``user``, ``item``
    and ``timestamp`` of the original files and ``keep`` 0 or 1) keeps; a behaviour the file does not list is
    kept. ``user_ids`` / ``item_ids`` map the original tokens to the IDs of ``rows``."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype={"user": str, "item": str}, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DataError(f"keep_file '{path}': not a readable CSV ({str(e).splitlines()[0]})") from None
    missing = [c for c in KEEP_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}:1: missing column(s) {missing}; expected {list(KEEP_COLUMNS)}")
    flags = pd.to_numeric(table["keep"], errors="coerce")
    bad = ~flags.isin([0, 1])
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise DataError(f"{path}:{line}: 'keep' must be 0 or 1, got {table['keep'].iloc[line - 2]!r}")
    users = table["user"].map(lambda t: user_ids.get(t, -1)).to_numpy(np.int64)
    items = table["item"].map(lambda t: item_ids.get(t, -1)).to_numpy(np.int64)
    times = pd.to_numeric(table["timestamp"], errors="coerce").to_numpy(np.float64)
    dropped = flags.to_numpy() == 0
    if not dropped.any():
        return np.ones(len(rows), dtype=bool)
    drop = pd.MultiIndex.from_arrays([users[dropped], items[dropped], times[dropped]])
    return ~pd.MultiIndex.from_arrays([rows.user, rows.item, rows.time]).isin(drop)


def build_cdr_data(dataset, config=None):
    """Apply the protocol to a :class:`BiaoDataset` and precompute history bounds for every row; the protocol's
    keys (seed, negatives, ``keep_file``) come from ``config`` (default: the dataset's own)."""
    logger = getLogger()
    shared = dataset.num_overlap_user  # users 1 .. shared-1 are in both domains
    if shared <= 1:
        raise DataError("the two domains share no user; cross-domain training needs users present in both")
    config = config or dataset.config
    per_positive, pool, seed = config["implicit_negatives"] or 1, config["negative_pool"] or "train", config["seed"] or 0
    domains, implicit, stats = {}, {}, {}
    for domain in DOMAINS:
        rows = _domain_behaviours(dataset, domain)
        keep = (rows.user > 0) & (rows.user < shared)
        stats[f"{domain}_rows"] = len(rows)
        stats[f"{domain}_rows_user_not_shared"] = int((~keep).sum())
        # a repeated (user, item, time) is one behaviour: kept twice, its copy would sit in valid or train
        # next to the test behaviour (the later row is kept)
        repeated = duplicate_rows(rows.user, rows.item, rows.time)
        stats[f"{domain}_duplicate_rows_dropped"] = int(repeated.sum())
        if repeated.any():
            logger.warning(f"{domain}: {int(repeated.sum())} rows repeat an earlier row's user, item and time; "
                           f"each behaviour is kept once (the later row)")
        keep &= ~repeated
        domains[domain] = rows.take(keep)
        ds = dataset.domain_dataset(domain)
        implicit[domain] = ds.label_field not in ds.inter_feat

    target = domains["target"]
    codes = leave_one_out(target.user, target.time)
    if implicit["target"]:
        target, codes = with_negatives(target, codes, per_positive, pool, seed)
        stats["target_sampled_negatives"] = len(target) - len(domains["target"])
    splits = {"train_target": target.take(codes == 0), "valid": target.take(codes == 1),
              "test": target.take(codes == 2)}
    # Source rows count for training only before the user's first held-out target behaviour.
    held_out = target.take(codes > 0)
    cutoff = np.full(shared, np.inf)
    np.minimum.at(cutoff, held_out.user, held_out.time)
    source = domains["source"]
    before = source.time < cutoff[source.user]
    if not before.any():
        raise DataError("no source behaviour is earlier than its user's first held-out target behaviour: nothing to "
                        "transfer (no trainer could learn anything from the source)")
    stats["source_rows_at_or_after_cutoff"] = int((~before).sum())
    source = source.take(before)
    if config["keep_file"]:  # a selection of the source training behaviours (learn, then select)
        ds = dataset.domain_dataset("source")
        kept = selected_rows(config["keep_file"], source, ds.field2token_id[ds.uid_field],
                             ds.field2token_id[ds.iid_field])
        stats["source_rows_dropped_by_selection"] = int((~kept).sum())
        logger.info(f"keep_file: {int((~kept).sum())} of {len(source)} source training behaviours dropped")
        source = source.take(kept)
        if len(source) == 0:
            raise DataError(f"keep_file '{config['keep_file']}' drops every source training "
                            f"behaviour; train the -0 variant instead")
    if implicit["source"]:
        source, _ = with_negatives(source, np.zeros(len(source), dtype=np.int8), per_positive, pool, seed + 2,
                                    seen=domains["source"])
        stats["source_sampled_negatives"] = len(source) - int(before.sum())
    splits["train_source"] = source
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
