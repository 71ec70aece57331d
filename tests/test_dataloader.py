"""Batches: grouping rows by user, user groups, and the pairing of source with target rows."""

import numpy as np
import pytest

from recbole_biao.data.dataloader import (BatchStream, TrainDataLoader, UserGroupStream, UserRows, concat_ranges)
from recbole_biao.errors import ConfigError


def test_concat_ranges_equals_the_python_loop():
    rng = np.random.default_rng(0)
    start = rng.integers(0, 50, size=30)
    end = start + rng.integers(0, 6, size=30)  # empty ranges included
    expected = np.concatenate([np.arange(s, e) for s, e in zip(start, end)])
    assert np.array_equal(concat_ranges(start, end), expected)
    assert len(concat_ranges(np.array([3]), np.array([3]))) == 0


def test_user_rows_gives_every_row_of_the_users_or_a_capped_sample():
    users = np.array([2, 0, 2, 1, 2, 2, 1, 3])
    rows = UserRows(users, 5)
    assert rows.rows(np.array([2, 1])).tolist() == [0, 2, 3, 4, 5, 6]
    assert rows.rows(np.array([4])).tolist() == []
    rng = np.random.default_rng(1)
    drawn = [tuple(rows.rows(np.array([2, 3]), cap=2, rng=rng)) for _ in range(200)]
    for sample in drawn:
        assert sum(users[list(sample)] == 2) == 2 and sum(users[list(sample)] == 3) == 1
    pairs = {tuple(i for i in sample if users[i] == 2) for sample in drawn}
    assert len(pairs) == 6  # every pair of user 2's four rows is drawn


def test_user_group_stream_passes_over_every_user_in_a_new_order():
    stream = UserGroupStream(np.arange(10, 20), seed=3)
    first = np.concatenate([stream.next_users(n) for n in (4, 4, 2)])
    second = np.concatenate([stream.next_users(5) for _ in range(2)])
    assert sorted(first.tolist()) == list(range(10, 20)) == sorted(second.tolist())
    assert first.tolist() != second.tolist()
    state = stream.state_dict()
    ahead = stream.next_users(7)
    stream.load_state_dict(state)
    assert stream.next_users(7).tolist() == ahead.tolist()


def test_file_order_stream(ml1m_loaded):
    data = ml1m_loaded[2]
    stream = BatchStream(data, "train_target", 100, 1, seed=0, shuffle=False)
    first = [stream.next_index().tolist() for _ in range(2)]
    assert first == [list(range(100)), list(range(100, 200))]


@pytest.mark.parametrize("ratio", [1, 3])
def test_same_user_pairing(ml1m_loaded, ratio):
    data = ml1m_loaded[2]
    loader = TrainDataLoader(data, 256, 1, 5, seed=0, pairing="same_user", pairing_ratio=ratio)
    has_source = np.bincount(data.splits["train_source"].user, minlength=data.num_users) > 0
    seen = set()
    for batch in loader:
        target_users = batch["target_user_id"].numpy()
        expected = np.repeat(target_users, ratio)
        expected = expected[has_source[expected]]
        assert batch["source_user_id"].numpy().tolist() == expected.tolist()
        index = batch["source_index"].numpy()
        assert (data.splits["train_source"].user[index] == expected).all()
        seen.update(index.tolist())
    assert len(seen) > 0.05 * len(data.splits["train_source"])


def test_stream_pairing_ratio_and_bad_values(ml1m_loaded):
    data = ml1m_loaded[2]
    batch = next(iter(TrainDataLoader(data, 100, 1, 5, seed=0, pairing_ratio=4)))
    assert len(batch["target_user_id"]) == 100 and len(batch["source_user_id"]) == 400
    with pytest.raises(ConfigError, match="'pairing': expected one of"):
        TrainDataLoader(data, 100, 1, pairing="nearest")
    with pytest.raises(ConfigError, match="'pairing_ratio': expected an int >= 1"):
        TrainDataLoader(data, 100, 1, pairing_ratio=0)


def test_the_trainer_declares_what_the_data_layer_serves(ml1m_loaded):
    from recbole_biao.data import DataNeeds, data_preparation
    from recbole_biao.trainer import BIAOTrainer, CDRTrainer
    from tests.helpers import config_for

    _, _, data = ml1m_loaded
    path = ml1m_loaded[0]["data_path"]
    _, base = config_for(path, "MiNet", history_length=7)
    assert CDRTrainer.data_needs(base) == DataNeeds({"source": 7, "target": 7})
    _, biao = config_for(path, "MiNet", trainer="BIAO", history_length=7, perceptron_history_length=12)
    assert BIAOTrainer.data_needs(biao) == DataNeeds({"source": 12, "target": 7})  # the perceptron weighs source rows
    _, split = config_for(path, "MiNet", trainer="BIAO", dev_strategy="split", dev_split_ratio=0.1)
    assert BIAOTrainer.data_needs(split).holdout == 0.1
    # the loaders serve the configured trainer's needs, or the ones they are given
    train, valid, _ = data_preparation(biao, data)
    batch, eval_batch = next(iter(train)), next(iter(valid))
    assert batch["source_hist_source"].shape[1] == 12 and batch["target_hist_target"].shape[1] == 7
    assert eval_batch["target_hist_source"].shape[1] == 7
    train, _, _ = data_preparation(biao, data, DataNeeds({"source": 3, "target": 5}))
    batch = next(iter(train))
    assert batch["source_hist_target"].shape[1] == 3 and batch["target_hist_source"].shape[1] == 5
    train, _, _ = data_preparation(split, data)
    rows = len(data.splits["train_target"])
    assert train.target_split == "train_lower" and train.num_target == rows - round(0.1 * rows)
    assert len(train.data.splits["dev"]) == round(0.1 * rows)
