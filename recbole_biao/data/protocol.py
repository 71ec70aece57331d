"""The paper's evaluation protocol on top of a loaded :class:`~recbole_biao.data.dataset.BiaoDataset`.

- Domains that share users: only those users are kept. Domains that share items only (disjoint users): every
  user is kept, and only models that transfer through items train on them.
- Label: RecBole's ``threshold`` (``{rating: 4}``: rating > 3) in both domains. A domain without labels
  (implicit feedback: every row an interaction) gets ``implicit_negatives`` sampled negatives per positive,
  never an item the user interacted with, at the positive's time, drawn once with the seed (so valid and
  test negatives are fixed), in their positive's split: valid and test negatives uniform over the domain's
  items, training negatives uniform over the items with a training positive (``negative_pool: train``;
  ``all``: over every item, which teaches items first seen in valid/test as negatives only).
- Target, per user: ``eval_args.split`` (default leave-one-out by time: last behaviour = test, second to last
  = valid, the rest = train; or RecBole's ratios ``RS``, by time or shuffled with the seed).
- Source training behaviours: strictly before the user's first held-out (valid, else test) target behaviour.
- History features of a behaviour: the user's most recent positive behaviours in each domain that are
  strictly earlier in time (ties excluded), most recent first.
"""

from dataclasses import dataclass, field, replace
from logging import getLogger
from typing import Dict, List, Optional, Tuple

import numpy as np

from recbole_biao.data.dataset import DOMAINS
from recbole_biao.errors import ConfigError, DataError

__all__ = ["Behaviours", "HistoryIndex", "CDRData", "duplicate_rows", "leave_one_out", "split_codes",
           "ratio_split_sizes", "NegativePool", "sample_negatives", "negative_pools", "with_negatives",
           "selected_rows", "selected_histories", "build_cdr_data"]


@dataclass
class Behaviours:
    """Rows of one domain: ``[n]`` arrays of user, item, label (float32) and time (float64)."""

    user: np.ndarray
    item: np.ndarray
    label: np.ndarray
    time: np.ndarray

    def __len__(self):
        return len(self.user)

    def take(self, index: np.ndarray) -> "Behaviours":
        return Behaviours(self.user[index], self.item[index], self.label[index], self.time[index])

    @staticmethod
    def concat(parts: List["Behaviours"]) -> "Behaviours":
        return Behaviours(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("user", "item", "label", "time")))


class HistoryIndex:
    """The positive behaviours of one domain, sorted by (user, time), for history look-ups.

    Args:
        positives (Behaviours): the positive behaviours of the domain (all of them: a history only ever
            reaches behaviours strictly earlier than the one it describes).
    """

    def __init__(self, positives: Behaviours):
        order = np.lexsort((positives.time, positives.user))
        self.user = positives.user[order]
        self.time = positives.time[order]
        self.item = positives.item[order]

    def bounds(self, user: np.ndarray, time: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Return ``(start, end)`` so that ``item[start:end]`` are the positives of ``user`` with time < ``time``."""
        start = np.searchsorted(self.user, user, side="left")
        # Rank all timestamps together so that (user, time) becomes one sortable int64 key.
        times, inverse = np.unique(np.concatenate([self.time, time]), return_inverse=True)
        span = len(times) + 1
        keys = self.user.astype(np.int64) * span + inverse[: len(self.time)]
        query = np.asarray(user, dtype=np.int64) * span + inverse[len(self.time):]
        end = np.searchsorted(keys, query, side="left")
        return start.astype(np.int64), end.astype(np.int64)

    def gather(self, start: np.ndarray, end: np.ndarray, length: int) -> Tuple[np.ndarray, np.ndarray]:
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
    negative_pools: dict = field(default_factory=dict)  # per implicit domain: its training NegativePool

    @property
    def num_users(self) -> int:
        """Size of the user ID space (IDs of every split are below it)."""
        return 1 + max((int(rows.user.max()) for rows in self.splits.values() if len(rows)), default=0)

    def split_domain(self, split: str) -> str:
        return "source" if split == "train_source" else "target"

    def with_subsets(self, split: str, subsets: Dict[str, np.ndarray]) -> "CDRData":
        """A copy in which the rows ``index`` of the target ``split`` form a new split, for each
        ``name: index`` of ``subsets``; this object is left unchanged."""
        if self.split_domain(split) != "target":
            raise ValueError("only target splits can be subdivided")
        copy = replace(self, splits=dict(self.splits), bounds=dict(self.bounds))
        for name, index in subsets.items():
            copy.splits[name] = self.splits[split].take(index)
            copy.bounds[name] = {d: (start[index], end[index]) for d, (start, end) in self.bounds[split].items()}
        return copy

    def with_fresh_negatives(self, splits: List[str], seed: int) -> "CDRData":
        """A copy in which the sampled negatives (label 0) of the training ``splits`` of implicit domains have new
        items, drawn as the protocol draws them (from the same pool, never the user's own); their users, times
        and so their histories stay. RecBole draws training negatives anew every epoch; this is that draw."""
        rng = np.random.default_rng(seed)
        copy = replace(self, splits=dict(self.splits))
        for split in splits:
            pool = self.negative_pools.get(self.split_domain(split))
            if pool is None:
                continue
            rows = self.splits[split]
            negative = np.flatnonzero(rows.label == 0)
            item, ok = pool.draw(rows.user[negative], rng)
            items = rows.item.copy()
            items[negative[ok]] = item[ok]  # (a row with no other item to draw keeps its own)
            copy.splits[split] = Behaviours(rows.user, items, rows.label, rows.time)
        return copy


def duplicate_rows(user: np.ndarray, item: np.ndarray, time: np.ndarray) -> np.ndarray:
    """``[n]`` bool: rows whose (user, item, time) occurs again in a later row."""
    order = np.lexsort((np.arange(len(user)), time, item, user))
    key = np.stack([user[order], item[order], time[order]]).astype(np.float64)  # ids and times are exact here
    repeated = np.zeros(len(user), dtype=bool)
    repeated[order[:-1]] = (np.diff(key, axis=1) == 0).all(axis=0)
    return repeated


def leave_one_out(user: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Per user, ordered by time (ties by row order): last = test, second to last = valid, rest = train.

    Returns:
        np.ndarray: ``[n]`` int8 codes, 0 train, 1 valid, 2 test.
    """
    return split_codes(user, time)


def ratio_split_sizes(count: int, ratios: List[float]) -> Tuple[int, ...]:
    """``(train, valid, test)`` row counts of a group of ``count`` rows split by ``ratios`` (RecBole's rule for
    ``eval_args.split: {RS: ratios}``): each held-out part gets ``floor(ratio * count)`` and training the rest;
    a held-out part that rounds to nothing takes one row from training while training keeps more than one."""
    total = float(sum(ratios))
    sizes = [int(r / total * count) for r in ratios]
    sizes[0] = count - sum(sizes[1:])
    for i in range(len(sizes) - 1, 0, -1):
        if sizes[0] <= 1:
            break
        if 0 < ratios[i] / total * count < 1:
            sizes[i] += 1
            sizes[0] -= 1
    return tuple(sizes)


SPLIT_ORDERS = ("TO", "RO")


def split_codes(user: np.ndarray, time: np.ndarray, eval_args: Optional[dict] = None, seed: int = 0) -> np.ndarray:
    """The target split ``eval_args`` asks for, per user (``group_by: user``): ``split: {LS: valid_and_test}``
    leave-one-out (last = test, second to last = valid), or ``{RS: [train, valid, test]}`` ratios (RecBole's
    rule, :func:`ratio_split_sizes`), the user's rows ordered by time (``order: TO``) or shuffled with the seed
    (``RO``).

    Returns:
        np.ndarray: ``[n]`` int8 codes, 0 train, 1 valid, 2 test.
    """
    eval_args = eval_args or {}
    split = eval_args.get("split") or {"LS": "valid_and_test"}
    order = str(eval_args.get("order", "TO"))
    if order not in SPLIT_ORDERS:
        raise ConfigError(f"properties key eval_args.order: expected TO (by time) or RO (random), got {order!r}")
    if eval_args.get("group_by", "user") != "user":
        raise ConfigError(f"properties key eval_args.group_by: expected user (each user's rows are split), got "
                          f"{eval_args.get('group_by')!r}")
    if not isinstance(split, dict) or len(split) != 1 or next(iter(split)) not in ("LS", "RS"):
        raise ConfigError(f"properties key eval_args.split: expected {{LS: valid_and_test}} or {{RS: [train, valid, "
                          f"test]}}, got {split!r}")
    kind, value = next(iter(split.items()))
    if kind == "LS" and value != "valid_and_test":
        raise ConfigError(f"properties key eval_args.split: LS supports valid_and_test (a valid and a test row per "
                          f"user), got {value!r}")
    if kind == "RS" and not (isinstance(value, list) and len(value) == 3 and all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and r >= 0 for r in value) and value[0] > 0):
        raise ConfigError(f"properties key eval_args.split: RS expects three ratios [train, valid, test] >= 0 with "
                          f"train > 0, got {value!r}")
    n = len(user)
    key = time if order == "TO" else np.random.default_rng(seed).random(n)
    order_index = np.lexsort((np.arange(n), key, user))
    sorted_user = user[order_index]
    starts = np.flatnonzero(np.r_[True, sorted_user[1:] != sorted_user[:-1]])
    counts = np.diff(np.r_[starts, n])
    codes = np.zeros(n, dtype=np.int8)
    position = np.arange(n) - np.repeat(starts, counts)  # rank of a row within its user
    if kind == "LS":
        from_end = np.repeat(counts, counts) - 1 - position
        codes[order_index] = np.where(from_end == 0, 2, np.where(from_end == 1, 1, 0))
        return codes
    sizes = {c: ratio_split_sizes(int(c), value) for c in np.unique(counts)}
    train_end = np.repeat([sizes[c][0] for c in counts], counts)
    valid_end = train_end + np.repeat([sizes[c][1] for c in counts], counts)
    codes[order_index] = np.where(position < train_end, 0, np.where(position < valid_end, 1, 2))
    return codes


@dataclass
class NegativePool:
    """Where a domain's negatives come from: ``items`` to draw from, uniformly, and the ``user * span + item``
    keys (sorted) of the pairs never to draw (the user's own positives)."""

    items: np.ndarray
    seen_keys: np.ndarray
    span: int

    @classmethod
    def of(cls, items: np.ndarray, seen: Behaviours) -> "NegativePool":
        span = int(max(items.max(), seen.item.max())) + 1
        return cls(np.asarray(items), np.unique(seen.user.astype(np.int64) * span + seen.item), span)

    def draw(self, user: np.ndarray, rng: np.random.Generator, max_rounds: int = 100
             ) -> Tuple[np.ndarray, np.ndarray]:
        """``([n] items, [n] ok)``: an item per user in ``user``; ``ok`` is False where ``max_rounds`` draws found
        only the user's own items (a user who has nearly every item)."""
        item = self.items[rng.integers(len(self.items), size=len(user))]
        bad = np.flatnonzero(self.seen(user, item))
        for _ in range(max_rounds):  # only the pairs still bad are drawn and checked again
            if not len(bad):
                break
            item[bad] = self.items[rng.integers(len(self.items), size=len(bad))]
            bad = bad[self.seen(user[bad], item[bad])]
        ok = np.ones(len(user), dtype=bool)
        ok[bad] = False
        return item, ok

    def seen(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """``[n]`` bool: whether each (user, item) pair is one of the users' own (a binary search in the sorted
        keys)."""
        keys = user.astype(np.int64) * self.span + item
        at = np.searchsorted(self.seen_keys, keys)
        return self.seen_keys[np.minimum(at, len(self.seen_keys) - 1)] == keys if len(self.seen_keys) else \
            np.zeros(len(keys), dtype=bool)


def sample_negatives(positives: Behaviours, per_positive: int, seed: int = 0, items: Optional[np.ndarray] = None,
                     seen: Optional[Behaviours] = None, max_rounds: int = 100,
                     pool: Optional[NegativePool] = None) -> Tuple[Behaviours, np.ndarray]:
    """``per_positive`` negatives for each row of ``positives``, uniform over ``items`` (default: the items of
    these rows), never an item the user has a positive with (in ``seen``, default ``positives``), at the
    positive's time; or from a ready ``pool`` (then ``items`` and ``seen`` are its).

    Returns:
        (Behaviours, np.ndarray): the negatives (label 0) and the index of the positive each belongs to.
    """
    rng = np.random.default_rng(seed)
    if pool is None:
        items = np.unique(positives.item) if items is None else np.asarray(items)
        pool = NegativePool.of(items, positives if seen is None else seen) if len(items) else None
    if len(positives) == 0 or pool is None or len(pool.items) == 0:
        return positives.take(np.empty(0, dtype=np.int64)), np.empty(0, dtype=np.int64)
    parent = np.repeat(np.arange(len(positives)), per_positive)
    user = positives.user[parent]
    item, ok = pool.draw(user, rng, max_rounds)
    negatives = Behaviours(user[ok], item[ok], np.zeros(int(ok.sum()), dtype=np.float32), positives.time[parent][ok])
    return negatives, parent[ok]


def negative_pools(rows: Behaviours, codes: np.ndarray, pool: str, seen: Optional[Behaviours] = None
                   ) -> Dict[bool, NegativePool]:
    """``{True: the pool of training negatives, False: that of valid and test}`` for the implicit ``rows`` split
    by ``codes`` (0 = training) under ``negative_pool`` ``pool``, never an item of the user's in ``seen``
    (default ``rows``). Both share one set of the users' keys (its span lies above every item ID)."""
    every = NegativePool.of(np.unique(rows.item), rows if seen is None else seen)
    if pool != "train":
        return {True: every, False: every}
    return {True: replace(every, items=np.unique(rows.item[codes == 0])), False: every}


def with_negatives(rows: Behaviours, codes: np.ndarray, per_positive: int, pool: str, seed: int,
                   seen: Optional[Behaviours] = None, pools: Optional[Dict[bool, NegativePool]] = None
                   ) -> Tuple[Behaviours, np.ndarray]:
    """Sampled negatives for implicit rows (all positives) split by ``codes`` (0 = training): training
    negatives come from the items with a training positive (``pool: train``: the catalogue as known at
    training time, so an item first seen in valid or test is never taught as a negative) or from every item
    (``pool: all``); valid and test negatives from every item; never an item of the user's in ``seen`` (default
    ``rows``); ``pools``: :func:`negative_pools` already built for them. Returns the rows with their negatives
    and codes."""
    train = codes == 0
    pools = pools or negative_pools(rows, codes, pool, seen)
    parts, part_codes = [rows], [codes]
    for is_train, offset in ((True, 0), (False, 1)):
        index = np.flatnonzero(train == is_train)
        negatives, parent = sample_negatives(rows.take(index), per_positive, seed + offset, pool=pools[is_train])
        parts.append(negatives)
        part_codes.append(codes[index][parent])
    return Behaviours.concat(parts), np.concatenate(part_codes)


def _domain_behaviours(dataset, domain: str, timeless: bool = False) -> Behaviours:
    ds = dataset.domain_dataset(domain)
    df = ds.inter_feat
    label_field = ds.label_field
    if label_field in df:
        label = df[label_field].to_numpy(dtype=np.float32)
    else:  # implicit feedback: every row is a positive
        label = np.ones(len(df), dtype=np.float32)
    if ds.time_field not in df:
        if not timeless:
            raise DataError(f"{domain}_domain: the .inter file has no time column '{ds.time_field}' (load_col); the "
                            f"protocol orders behaviours by time (without one: domains sharing items only, "
                            f"eval_args.order RO)")
        # every behaviour at one time: none is strictly earlier than another, so no history features
        return Behaviours(df[ds.uid_field].to_numpy(np.int64), df[ds.iid_field].to_numpy(np.int64), label,
                          np.zeros(len(df)))
    return Behaviours(df[ds.uid_field].to_numpy(np.int64), df[ds.iid_field].to_numpy(np.int64), label,
                      df[ds.time_field].to_numpy(np.float64))


KEEP_COLUMNS = ("user", "item", "timestamp", "keep")


def selected_histories(training: Behaviours, kept: np.ndarray, later: Behaviours) -> Behaviours:
    """The source behaviours left to the history features under ``select_histories``: the ``kept`` ones of the
    ``training`` behaviours, and of the ``later`` ones (after their user's first held-out target behaviour:
    never training rows, never scored) those whose item keeps at least half of its training behaviours (an item
    without any is kept)."""
    size = 1 + int(max(training.item.max(initial=0), later.item.max(initial=0)))
    dropped = np.bincount(training.item[~kept], minlength=size)
    listed = np.bincount(training.item, minlength=size)
    return Behaviours.concat([training.take(kept), later.take(2 * dropped[later.item] <= listed[later.item])])


def selected_rows(path: str, rows: Behaviours, user_ids: Dict[str, int], item_ids: Dict[str, int]) -> np.ndarray:
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


def build_cdr_data(dataset, config=None) -> CDRData:
    """Apply the protocol to a :class:`BiaoDataset` and precompute history bounds for every row; the protocol's
    keys (seed, negatives, ``keep_file``) come from ``config`` (default: the dataset's own)."""
    logger = getLogger()
    overlap = dataset.overlap
    shared = dataset.num_overlap_user  # users 1 .. shared-1 are in both domains
    config = config or dataset.config
    order = str((config["eval_args"] or {}).get("order", "TO"))
    per_positive, pool = config["implicit_negatives"] or 1, config["negative_pool"] or "train"
    seed = config["seed"] or 0
    domains, implicit, stats = {}, {}, {}
    for domain in DOMAINS:
        rows = _domain_behaviours(dataset, domain, timeless=overlap == "item" and order == "RO")
        # shared users: only they can transfer; shared items only: every user (each belongs to one domain)
        keep = (rows.user > 0) & ((rows.user < shared) if overlap == "user" else True)
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
    codes = split_codes(target.user, target.time, config["eval_args"], seed)
    pools = {}
    if implicit["target"]:
        target_pools = negative_pools(target, codes, pool)
        pools["target"] = target_pools[True]  # (the draws of resample_negatives)
        target, codes = with_negatives(target, codes, per_positive, pool, seed, pools=target_pools)
        stats["target_sampled_negatives"] = len(target) - len(domains["target"])
    splits = {"train_target": target.take(codes == 0), "valid": target.take(codes == 1),
              "test": target.take(codes == 2)}
    # Source rows count for training only before the user's first held-out target behaviour.
    held_out = target.take(codes > 0)
    cutoff = np.full(1 + max(int(domains[d].user.max(initial=0)) for d in DOMAINS), np.inf)
    np.minimum.at(cutoff, held_out.user, held_out.time)
    source = domains["source"]
    before = source.time < cutoff[source.user]
    if not before.any():
        raise DataError("no source behaviour is earlier than its user's first held-out target behaviour: nothing to "
                        "transfer (no trainer could learn anything from the source)")
    stats["source_rows_at_or_after_cutoff"] = int((~before).sum())
    source = source.take(before)
    in_histories = dict(domains)
    if config["keep_file"]:  # a selection of the source training behaviours (learn, then select)
        ds = dataset.domain_dataset("source")
        kept = selected_rows(config["keep_file"], source, ds.field2token_id[ds.uid_field],
                             ds.field2token_id[ds.iid_field])
        stats["source_rows_dropped_by_selection"] = int((~kept).sum())
        logger.info(f"keep_file: {int((~kept).sum())} of {len(source)} source training behaviours dropped")
        if config["select_histories"]:
            in_histories["source"] = selected_histories(source, kept, domains["source"].take(~before))
            stats["source_history_rows_dropped_by_selection"] = len(domains["source"]) - len(in_histories["source"])
        source = source.take(kept)
        if len(source) == 0:
            raise DataError(f"keep_file '{config['keep_file']}' drops every source training "
                            f"behaviour; train the -0 variant instead")
    if implicit["source"]:
        all_train = np.zeros(len(source), dtype=np.int8)
        source_pools = negative_pools(source, all_train, pool, seen=domains["source"])
        pools["source"] = source_pools[True]
        source, _ = with_negatives(source, all_train, per_positive, pool, seed + 2, pools=source_pools)
        stats["source_sampled_negatives"] = len(source) - int(before.sum())
    splits["train_source"] = source
    for name, rows in splits.items():
        stats[f"{name}_rows"] = len(rows)
    if len(splits["train_target"]) == 0:
        raise DataError("no target training behaviour is left after the split of eval_args "
                        "(every user has too few target behaviours)")
    stats["overlap"] = overlap

    history = {d: HistoryIndex(in_histories[d].take(in_histories[d].label > 0)) for d in DOMAINS}
    bounds = {name: {d: history[d].bounds(rows.user, rows.time) for d in DOMAINS} for name, rows in splits.items()}
    logger.info("protocol: " + ", ".join(f"{k}={v}" for k, v in stats.items()))
    users = [dataset.id2token(d, "user") for d in DOMAINS]  # disjoint users: each domain names its own
    tokens = {"user": np.where(users[0] != "", users[0], users[1]),
              **{f"{d}_item": dataset.id2token(d, "item") for d in DOMAINS},
              **{f"{d}_category": np.array(dataset.category_tokens[d], dtype=object) for d in DOMAINS}}
    return CDRData(splits, history, bounds, dataset.item_category, dataset.num_categories, stats, tokens, pools)
