"""Batches of the protocol's behaviours as RecBole ``Interaction`` objects.

A batch holds, for each domain ``d`` it covers, the fields
``d_user_id``, ``d_item_id``, ``d_label``, ``d_index`` (row in its split) and the history features
``d_hist_source`` / ``d_hist_target`` (``[B, N]`` item IDs, most recent first, 0-padded) with
``d_hist_source_len`` / ``d_hist_target_len``.
"""

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole_cdr.utils import CrossDomainDataLoaderState

from recbole_biao.data.dataset import DOMAINS
from recbole_biao.errors import ConfigError

__all__ = ["DataNeeds", "OVERLAP_FIELD", "batch_field", "make_batch", "concat_ranges", "UserRows", "BatchStream",
           "UserGroupStream", "TrainDataLoader", "EvalDataLoader"]


@dataclass(frozen=True)
class DataNeeds:
    """What a trainer asks of the data layer, which knows no trainer (see ``data_needs`` on the trainers).

    Attributes:
        history_length (dict): per domain of the training rows (``source``, ``target``), how many recent
            positives of each domain a batch row carries (evaluation rows get the ``target`` length).
        holdout (float or None): a fraction of the target training rows set aside as split ``dev``: the
            trainer may read them, the model never trains on them (None: no such split).
    """

    history_length: dict
    holdout: Optional[float] = None

    @classmethod
    def plain(cls, history_length: Optional[int]) -> "DataNeeds":
        """The same history length for the rows of both domains, no holdout: what a model alone needs."""
        return cls({"source": history_length or 0, "target": history_length or 0})


def batch_field(domain: str, name: str) -> str:
    """The one definition of a batch's field names: ``<domain>_<name>`` for ``user_id``, ``item_id`` (as
    RecBole-CDR prefixes its USER_ID_FIELD and ITEM_ID_FIELD), ``label``, ``index``, ``time`` (a feature may use
    only what came strictly before it), ``hist_<domain>`` and ``hist_<domain>_len``."""
    return f"{domain}_{name}"


def make_batch(data, split: str, index: np.ndarray, history_length: int) -> Dict[str, torch.Tensor]:
    """Fields of the rows ``index`` of ``data.splits[split]``, prefixed with their domain."""
    domain = data.split_domain(split)
    rows = data.splits[split]
    fields = {
        batch_field(domain, "user_id"): torch.from_numpy(rows.user[index]),
        batch_field(domain, "item_id"): torch.from_numpy(rows.item[index]),
        batch_field(domain, "label"): torch.from_numpy(rows.label[index]),
        batch_field(domain, "index"): torch.from_numpy(np.asarray(index, dtype=np.int64)),
        batch_field(domain, "time"): torch.from_numpy(rows.time[index]),
    }
    for hist_domain in DOMAINS:
        start, end = data.bounds[split][hist_domain]
        items, lengths = data.history[hist_domain].gather(start[index], end[index], history_length)
        fields[batch_field(domain, f"hist_{hist_domain}")] = torch.from_numpy(items)
        fields[batch_field(domain, f"hist_{hist_domain}_len")] = torch.from_numpy(lengths)
    return fields


def concat_ranges(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, e) for s, e in zip(start, end)])`` without a Python loop."""
    lengths = np.maximum(end - start, 0)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    offsets = np.repeat(start - np.cumsum(np.concatenate([[0], lengths[:-1]])), lengths)
    return offsets + np.arange(total, dtype=np.int64)


class UserRows:
    """The rows of one split grouped by user, for batches that hold chosen users' behaviours.

    Args:
        users (np.ndarray): ``[n]`` the user of each row; num_users (int): size of the user ID space.
    """

    def __init__(self, users: np.ndarray, num_users: int):
        self.order = np.argsort(users, kind="stable").astype(np.int64)
        counts = np.bincount(users, minlength=num_users)
        self.start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.count = counts.astype(np.int64)

    def rows(self, users: np.ndarray, cap: Optional[int] = None, rng: Optional[np.random.Generator] = None
             ) -> np.ndarray:
        """Row indices of ``users`` (every row, or a random sample of at most ``cap`` per user), sorted."""
        index = concat_ranges(self.start[users], self.start[users] + self.count[users])
        if cap is not None and len(index):
            owner = np.repeat(np.arange(len(users)), self.count[users])
            order = np.lexsort((rng.random(len(index)), owner))  # a random order within each user
            first = np.concatenate([[0], np.cumsum(self.count[users])[:-1]])
            rank = np.empty(len(index), dtype=np.int64)
            rank[order] = np.arange(len(index)) - np.repeat(first, self.count[users])
            index = index[rank < cap]
        return np.sort(self.order[index])


OVERLAP_FIELD = "overlap_user_id"  # the users of an OVERLAP-phase batch


class _Loader:
    """Shared parts: batch size, history length and a seeded generator for the shuffles."""

    def __init__(self, data, batch_size, history_length, seed=0):
        self.data = data
        self.batch_size = batch_size
        self.history_length = history_length
        self.generator = torch.Generator().manual_seed(seed)

    def _permutation(self, n):
        return torch.randperm(n, generator=self.generator).numpy()


class _PassStream(_Loader):
    """Endless indices ``0 .. size-1`` from passes that each start where the last ended: a fresh permutation
    per pass, or (``shuffle=False``) the natural order."""

    def __init__(self, data, batch_size, history_length, size, seed=0, shuffle=True):
        super().__init__(data, batch_size, history_length, seed)
        self.size, self.shuffle = size, shuffle
        self._order = np.empty(0, dtype=np.int64)
        self._pos = 0

    def next_index(self, n: Optional[int] = None) -> np.ndarray:
        n = self.batch_size if n is None else n
        taken = []
        while n > 0 and self.size > 0:
            if self._pos >= len(self._order):
                self._order = self._permutation(self.size) if self.shuffle else np.arange(self.size)
                self._pos = 0
            part = self._order[self._pos:self._pos + n]
            self._pos += len(part)
            taken.append(part)
            n -= len(part)
        return np.concatenate(taken) if taken else np.empty(0, dtype=np.int64)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": torch.from_numpy(self._order),
                "pos": torch.tensor([self._pos])}  # (tensors only: ranks gather them for a resume state)

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._order = state["order"].numpy()
        self._pos = int(state["pos"])


class BatchStream(_PassStream):
    """Endless batches from passes over one split (each pass a fresh permutation; with ``shuffle=False``
    every pass reads the rows in file order).

    Serves the source half of training batches, and trainers that draw batches of their own (e.g. from
    the target training set again, in another order).
    """

    def __init__(self, data, split, batch_size, history_length, seed=0, shuffle=True):
        super().__init__(data, batch_size, history_length, len(data.splits[split]), seed, shuffle)
        self.split = split

    def next_fields(self, n: Optional[int] = None) -> Dict[str, torch.Tensor]:
        return make_batch(self.data, self.split, self.next_index(n), self.history_length)

    def next_batch(self, n: Optional[int] = None) -> Interaction:
        return Interaction(self.next_fields(n))


class UserGroupStream(_PassStream):
    """Endless groups of users from reshuffled passes over ``users`` (each pass a fresh permutation)."""

    def __init__(self, users, seed=0):
        self.users = np.asarray(users, dtype=np.int64)
        super().__init__(None, 0, 0, len(self.users), seed)

    def next_users(self, n: int) -> np.ndarray:
        return self.users[self.next_index(n)]


class TrainDataLoader(_Loader):
    """One epoch = one shuffled pass over the target training behaviours (histories of ``history_length``).

    Each batch also carries ``pairing_ratio`` source training behaviours per target row (histories of
    ``source_history_length``), chosen by ``pairing``:

    - ``stream``: from a :class:`BatchStream` over the source training set that continues across epochs, as
      RecBole-CDR's BOTH mode does (there with one per target row);
    - ``same_user``: random source behaviours of each target row's user (none for a user without source
      behaviours), as the reference code of Chen et al. (WWW '23) pairs them (there one per target row).

    With ``resample_negatives`` the sampled negatives of implicit domains get new items every epoch, as
    RecBole's training sampler draws them (the protocol's draw otherwise serves every epoch).
    """

    PAIRINGS = ("stream", "same_user")

    def __init__(self, data, batch_size, history_length, source_history_length=None, seed=0,
                 target_split="train_target", pairing="stream", pairing_ratio=1, rank=0, world_size=1,
                 resample_negatives=False):
        super().__init__(data, batch_size, history_length, seed)
        self.protocol_data, self.resample_negatives = data, resample_negatives
        # several processes (torchrun): every rank walks the same passes and takes its own share of each batch
        self.rank, self.world_size = rank, world_size
        if batch_size % world_size:
            raise ConfigError(f"properties key 'train_batch_size': {batch_size} does not split evenly over "
                              f"{world_size} processes; use a multiple of {world_size}")
        if len(data.splits[target_split]) < world_size:
            raise ConfigError(f"{len(data.splits[target_split])} target training rows cannot be shared by "
                              f"{world_size} processes")
        if pairing not in self.PAIRINGS:
            raise ConfigError(f"properties key 'pairing': expected one of {list(self.PAIRINGS)}, "
                              f"got {pairing!r}")
        self.target_split = target_split
        self.num_target = len(data.splits[target_split])
        self.source_history_length = source_history_length or history_length
        self.pairing = pairing
        if pairing_ratio < 1:
            raise ConfigError(f"properties key 'pairing_ratio': expected an int >= 1, got {pairing_ratio!r}")
        self.pairing_ratio = pairing_ratio
        self.source = BatchStream(data, "train_source", batch_size, self.source_history_length, seed + 1)
        if pairing == "same_user":
            self.source_rows = UserRows(data.splits["train_source"].user, data.num_users)
        self.mode, self._overlap_users = CrossDomainDataLoaderState.BOTH, None

    def set_mode(self, state: CrossDomainDataLoaderState) -> None:
        """RecBole-CDR's phases (``train_epochs``): ``BOTH`` (target rows with paired source rows), ``TARGET``
        (target rows only), ``SOURCE`` (a pass over the source training rows) and ``OVERLAP`` (batches of the
        users with training rows in both domains, in :data:`OVERLAP_FIELD`: the mapping stage of a staged
        model). The staged modes run in one process only."""
        if state != CrossDomainDataLoaderState.BOTH and self.world_size > 1:
            raise ConfigError(f"train_epochs: the {state.name} phase runs in one process only (not under torchrun)")
        self.mode = state

    def _mode_rows(self):
        """The number of rows one epoch of the current mode walks over."""
        if self.mode == CrossDomainDataLoaderState.SOURCE:
            return len(self.data.splits["train_source"])
        if self.mode == CrossDomainDataLoaderState.OVERLAP:
            return len(self.overlap_users)
        return self.num_target

    @property
    def overlap_users(self) -> np.ndarray:
        if self._overlap_users is None:
            both = [np.unique(self.data.splits[s].user[self.data.splits[s].label > 0])
                    for s in ("train_source", self.target_split)]
            self._overlap_users = np.intersect1d(*both)
        return self._overlap_users

    def _staged_batches(self):
        """The batches of the SOURCE and OVERLAP modes: one shuffled pass."""
        order = self._permutation(self._mode_rows())
        for begin in range(0, len(order), self.batch_size):
            index = order[begin:begin + self.batch_size]
            if self.mode == CrossDomainDataLoaderState.SOURCE:
                yield Interaction(make_batch(self.data, "train_source", index, self.source_history_length))
            else:
                yield Interaction({OVERLAP_FIELD: torch.from_numpy(self.overlap_users[index])})

    def _starts(self):
        """Where the batches begin; with several ranks a last batch too small to give each rank a row joins the
        one before it (every rank must take the same number of steps)."""
        starts = list(range(0, self.num_target, self.batch_size))
        if self.world_size > 1 and len(starts) > 1 and self.num_target - starts[-1] < self.world_size:
            starts.pop()
        return starts

    def __len__(self):
        if self.mode in (CrossDomainDataLoaderState.SOURCE, CrossDomainDataLoaderState.OVERLAP):
            return (self._mode_rows() + self.batch_size - 1) // self.batch_size
        return len(self._starts())

    def share(self, index: np.ndarray) -> np.ndarray:
        """This rank's contiguous share of a batch's ``index`` (all of it in a single process)."""
        n, k, r = len(index), self.world_size, self.rank
        return index[r * n // k:(r + 1) * n // k]

    def _same_user_source(self, target_index):
        users = np.repeat(self.data.splits[self.target_split].user[target_index], self.pairing_ratio)
        count = self.source_rows.count[users]
        draw = torch.rand(len(users), generator=self.generator).numpy()
        pick = self.source_rows.start[users] + np.minimum((draw * count).astype(np.int64), count - 1)
        pick, count = self.share(pick), self.share(count)  # (every rank makes all draws, keeps its share)
        index = self.source_rows.order[pick[count > 0]]
        return make_batch(self.data, "train_source", index, self.source_history_length)

    def _fresh_negatives(self):
        """With ``resample_negatives``: new items for the sampled training negatives, once per epoch (the seed
        drawn from this loader's generator, so every rank and a resumed run draw the same)."""
        seed = int(torch.randint(2 ** 31 - 1, (1,), generator=self.generator))
        self.data = self.protocol_data.with_fresh_negatives([self.target_split, "train_source"], seed)
        self.source.data = self.data

    def __iter__(self):
        if self.resample_negatives:
            self._fresh_negatives()
        if self.mode in (CrossDomainDataLoaderState.SOURCE, CrossDomainDataLoaderState.OVERLAP):
            yield from self._staged_batches()
            return
        order = self._permutation(self.num_target)
        starts = self._starts()
        for i, begin in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else self.num_target
            target_index = order[begin:end]
            fields = make_batch(self.data, self.target_split, self.share(target_index), self.history_length)
            if self.mode == CrossDomainDataLoaderState.TARGET:
                pass  # the target rows alone
            elif self.pairing == "same_user":
                fields.update(self._same_user_source(target_index))
            else:
                source = self.source.next_index(len(target_index) * self.pairing_ratio)
                fields.update(make_batch(self.data, "train_source", self.share(source), self.source_history_length))
            yield Interaction(fields)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "source": self.source.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.source.load_state_dict(state["source"])


class EvalDataLoader(_Loader):
    """The valid or test target behaviours, in a fixed order."""

    def __init__(self, data, split, batch_size, history_length):
        super().__init__(data, batch_size, history_length)
        self.split = split
        self.num_rows = len(data.splits[split])

    def __len__(self):
        return (self.num_rows + self.batch_size - 1) // self.batch_size

    def __bool__(self):
        return self.num_rows > 0

    def __iter__(self):
        for begin in range(0, self.num_rows, self.batch_size):
            index = np.arange(begin, min(begin + self.batch_size, self.num_rows))
            yield Interaction(make_batch(self.data, self.split, index, self.history_length))
