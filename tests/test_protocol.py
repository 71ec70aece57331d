"""The paper's protocol on the real ML-1M genre split, checked against independent pandas computations."""

import os

import numpy as np
import pandas as pd
import pytest

from recbole_biao.data.dataloader import make_batch
from recbole_biao.data.protocol import leave_one_out


def frame(rows):
    return pd.DataFrame({"user": rows.user, "item": rows.item, "label": rows.label, "time": rows.time})


def test_label_is_rating_above_three(ml1m_loaded, ml1m_path):
    _, dataset, _ = ml1m_loaded
    for domain in ("source", "target"):
        raw = pd.read_csv(os.path.join(ml1m_path[0], f"ml-1m-genres-{domain}", f"ml-1m-genres-{domain}.inter"),
                          sep="\t", quoting=3)
        ds = dataset.domain_dataset(domain)
        token2id = ds.field2token_id[ds.iid_field]
        loaded = ds.inter_feat
        assert len(loaded) == len(raw)  # no row filtered out, rows in file order
        assert (loaded[ds.iid_field].to_numpy() == raw["item_id:token"].map(token2id.get).to_numpy()).all()
        assert (loaded[ds.label_field].to_numpy() == (raw["rating:float"].to_numpy() > 3)).all()


def test_leave_one_out_by_time_with_ties_and_short_users():
    user = np.array([1, 1, 1, 2, 2, 3, 1])
    time = np.array([5, 3, 9, 1, 1, 4, 7.0])
    # user 1: 9 test, 7 valid; user 2: a tie keeps row order; user 3: its only behaviour is the test
    assert leave_one_out(user, time).tolist() == [0, 0, 2, 1, 2, 2, 1]


def test_target_split_matches_groupby(ml1m_loaded):
    _, _, data = ml1m_loaded
    target = pd.concat([frame(data.splits[s]).assign(split=s) for s in ("train_target", "valid", "test")])
    ordered = target.sort_values(["user", "time"], kind="stable")
    last = ordered.groupby("user").tail(1)
    assert (last["split"] == "test").all() and len(last) == len(data.splits["test"])
    assert len(data.splits["test"]) == target["user"].nunique()
    per_user = ordered.groupby("user")
    for user, rows in list(per_user)[:500]:
        splits = rows["split"].tolist()
        assert splits[-1] == "test"
        if len(rows) > 1:
            assert splits[-2] == "valid" and set(splits[:-2]) <= {"train_target"}
            assert rows["time"].iloc[-2] <= rows["time"].iloc[-1]


def test_no_source_training_behaviour_at_or_after_the_held_out_time(ml1m_loaded):
    _, _, data = ml1m_loaded
    held_out = pd.concat([frame(data.splits["valid"]), frame(data.splits["test"])]).groupby("user")["time"].min()
    source = frame(data.splits["train_source"])
    assert (source["time"].to_numpy() < held_out.loc[source["user"]].to_numpy()).all()
    # ... and every earlier source behaviour of a shared user is kept
    loaded = ml1m_loaded[1].source_domain_dataset.inter_feat
    before = loaded["source_timestamp"].to_numpy() < held_out.reindex(loaded["source_user_id"]).to_numpy()
    assert before.sum() == len(source)


@pytest.mark.parametrize("split,length", [("train_target", 5), ("train_source", 20), ("test", 3)])
def test_history_is_strictly_earlier_positives_most_recent_first(ml1m_loaded, split, length):
    _, dataset, data = ml1m_loaded
    rng = np.random.default_rng(0)
    index = rng.choice(len(data.splits[split]), size=300, replace=False)
    batch = make_batch(data, split, index, length)
    domain = data.split_domain(split)
    rows = data.splits[split]
    for hist_domain in ("source", "target"):
        feat = dataset.domain_dataset(hist_domain).inter_feat
        positives = feat[feat[f"{hist_domain}_label"] > 0]
        by_user = {u: g for u, g in positives.groupby(f"{hist_domain}_user_id")}
        items = batch[f"{domain}_hist_{hist_domain}"].numpy()
        lengths = batch[f"{domain}_hist_{hist_domain}_len"].numpy()
        assert items.shape == (len(index), length)
        for k, i in enumerate(index):
            user_rows = by_user.get(rows.user[i], positives.iloc[:0])
            earlier = user_rows[user_rows[f"{hist_domain}_timestamp"] < rows.time[i]]
            n = min(len(earlier), length)
            assert lengths[k] == n
            assert (items[k, n:] == 0).all()  # padding after the history
            expected_times = np.sort(earlier[f"{hist_domain}_timestamp"].to_numpy())[::-1][:n]
            item_time = dict(zip(earlier[f"{hist_domain}_item_id"], earlier[f"{hist_domain}_timestamp"]))
            assert all(it in item_time for it in items[k, :n])  # earlier positives only
            assert np.array_equal([item_time[it] for it in items[k, :n]], expected_times)  # the most recent, in order


def test_split_sizes_of_the_embedded_default(ml1m_loaded):
    stats = ml1m_loaded[2].stats
    assert stats["target_rows"] == 82006 and stats["source_rows"] == 889938
    assert stats["test_rows"] == 5415
    assert stats["train_target_rows"] + stats["valid_rows"] + stats["test_rows"] == 82006


@pytest.mark.parametrize("pool", ["train", "all"])
def test_negative_pool_keeps_items_first_seen_later_out_of_training_negatives(pool):
    from recbole_biao.data.protocol import Behaviours, with_negatives

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(1, 201), 5)
    items = rng.integers(1, 30, size=len(users))
    times = np.tile(np.arange(5.0), 200)
    items[times == 4] = rng.integers(30, 60, size=200)  # the test behaviours: items 30-59, never earlier
    rows = Behaviours(users, items, np.ones(len(users), dtype=np.float32), times)
    codes = leave_one_out(users, times)
    both, both_codes = with_negatives(rows, codes, 2, pool, seed=1)
    negative = both.label == 0
    train_negatives = set(both.item[negative & (both_codes == 0)].tolist())
    test_negatives = set(both.item[negative & (both_codes == 2)].tolist())
    assert (test_negatives & set(range(30, 60))) and (test_negatives & set(range(1, 30)))  # any item
    if pool == "train":
        assert train_negatives <= set(items[codes == 0].tolist())
    else:
        assert train_negatives & set(range(30, 60))
    assert (both_codes[negative] >= 0).all() and negative.sum() == 2 * len(rows)


def write_pair(folder, source_rows, target_rows):
    """Tiny atomic files of two domains (rows: user, item, rating, time) and their dataset yaml."""
    for domain, rows in (("source", source_rows), ("target", target_rows)):
        os.makedirs(folder / f"p-{domain}", exist_ok=True)
        with open(folder / f"p-{domain}" / f"p-{domain}.inter", "w") as f:
            f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
            f.writelines("\t".join(map(str, r)) + "\n" for r in rows)
    path = folder / "p.yaml"
    blocks = "".join(f"{d}_domain:\n  dataset: p-{d}\n  load_col: {{inter: [user_id, item_id, rating, timestamp]}}\n"
                     f"  user_inter_num_interval: \"[0,inf)\"\n  item_inter_num_interval: \"[0,inf)\"\n"
                     f"  val_interval: ~\n" for d in ("source", "target"))
    path.write_text(f"data_path: {str(folder)}/\n{blocks}")
    return str(path)


def load_pair(path):
    from recbole_biao.data import BiaoDataset, build_cdr_data
    from recbole_biao.quick_start import build_config

    return build_cdr_data(BiaoDataset(build_config("CoNet", None, [path], {"state": "ERROR"})[1]))


def user_rows(user, first_time, items, rating=5):
    return [(user, item, rating, first_time + k) for k, item in enumerate(items)]


def test_missing_ratings_duplicates_and_an_empty_source_are_decided_out_loud(tmp_path):
    from recbole_biao.errors import DataError

    source = user_rows("u1", 0, ["s1", "s2"]) + user_rows("u2", 0, ["s1", "s3"])
    target = user_rows("u1", 10, ["t1", "t2", "t3", "t4"]) + user_rows("u2", 10, ["t2", "t3", "t4", "t1"])
    data = load_pair(write_pair(tmp_path / "ok", source, target))
    assert len(data.splits["test"]) == 2 and data.stats["target_duplicate_rows_dropped"] == 0

    # a repeated last behaviour must not put a copy of the test behaviour into valid
    copy = write_pair(tmp_path / "dup", source, target + [("u1", "t4", 5, 13)])
    data = load_pair(copy)
    assert data.stats["target_duplicate_rows_dropped"] == 1
    test, valid = data.splits["test"], data.splits["valid"]
    pairs = set(zip(test.user, test.item))
    assert not pairs & set(zip(valid.user, valid.item)) and len(data.splits["train_target"]) == 4

    missing = target[:1] + [("u1", "t2", "", 11)] + target[2:]
    with pytest.raises(DataError, match=r"p-target.inter:3: empty or NaN 'rating' \(1 such rows\)"):
        load_pair(write_pair(tmp_path / "nan", source, missing))

    late = user_rows("u1", 50, ["s1", "s2"]) + user_rows("u2", 50, ["s1", "s3"])  # every source row after the cutoff
    with pytest.raises(DataError, match="no source behaviour is earlier than its user's first held-out target"):
        load_pair(write_pair(tmp_path / "late", late, target))


def test_missing_values_are_filled_under_copy_on_write_as_pandas_3_does():
    import types
    import warnings

    from recbole.utils import FeatureType

    from recbole_biao.compat import fill_nan

    def frame():
        return pd.DataFrame({"user_id": [1.0, np.nan, 3.0], "rating": [1.0, np.nan, 5.0]})

    with pd.option_context("mode.copy_on_write", True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        premise = frame()
        premise["rating"].fillna(value=0, inplace=True)  # RecBole 1.0.1's idiom: a no-op here
        assert premise["rating"].isna().any()
        dataset = types.SimpleNamespace(feat_name_list=["inter_feat"], inter_feat=frame(),
                                        field2type={"user_id": FeatureType.TOKEN, "rating": FeatureType.FLOAT})
        fill_nan(dataset)
    assert dataset.inter_feat["user_id"].tolist() == [1.0, 0.0, 3.0]
    assert dataset.inter_feat["rating"].tolist() == [1.0, 3.0, 5.0]  # the mean
    from recbole.data.dataset import Dataset

    assert Dataset._fill_nan is fill_nan  # installed on RecBole's datasets once recbole_biao.data is imported
