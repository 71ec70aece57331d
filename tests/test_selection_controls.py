"""The controls that learn-then-select's cutoffs are judged against (recbole_biao.experiments.controls)."""

import numpy as np
import pandas as pd
import pytest

from recbole_biao.experiments.controls import item_count_rho, per_user_keep, random_keep, rare_items_keep, write_mask


def test_random_keep_drops_exactly_as_many_rows_and_its_draws_differ():
    first, again, other = random_keep(1000, 300, 5), random_keep(1000, 300, 5), random_keep(1000, 300, 5, draw=1)
    assert (~first).sum() == (~other).sum() == 300
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert random_keep(10, 0, 5).all() and not random_keep(10, 10, 5).any()


def test_per_user_keep_takes_as_many_rows_from_each_user_as_the_candidate_but_not_the_same_rows():
    rng = np.random.default_rng(0)
    users = rng.choice([f"u{i}" for i in range(40)], size=2000)
    candidate = rng.random(2000) > 0.4
    candidate[users == "u3"] = True  # a user the candidate leaves alone
    control = per_user_keep(users, candidate, seed=1)
    for user in np.unique(users):
        mine = users == user
        assert (~control[mine]).sum() == (~candidate[mine]).sum()
    assert control[users == "u3"].all()
    assert (control != candidate).sum() > 200  # drawn within the user, not copied from the candidate


def test_rare_items_keep_drops_the_rows_of_the_least_frequent_items_first():
    rng = np.random.default_rng(2)
    items = rng.choice([f"i{i}" for i in range(60)], size=3000, p=rng.dirichlet(np.ones(60)))
    counts = pd.Series(items).map(pd.Series(items).value_counts()).to_numpy()
    for n_drop in (0, 1, 250, 1700, 3000):
        keep = rare_items_keep(items, n_drop, seed=4)
        assert (~keep).sum() == n_drop
        if 0 < n_drop < 3000:
            assert counts[~keep].max() <= counts[keep].min()
            # at most one item is split between dropped and kept rows (the last one reached)
            assert len(set(items[~keep]) & set(items[keep])) <= 1


def test_item_count_rho_is_the_rank_correlation_of_weight_and_item_frequency():
    rng = np.random.default_rng(3)
    items = rng.choice(list("abcdefghij"), size=500)
    counts = pd.Series(items).map(pd.Series(items).value_counts()).to_numpy()
    weights = counts + rng.normal(0, 20, size=500)
    ranks = pd.DataFrame({"w": weights, "c": counts}).rank()  # Spearman: Pearson of the (mid-)ranks
    assert item_count_rho(weights, items) == pytest.approx(np.corrcoef(ranks["w"], ranks["c"])[0, 1])
    assert item_count_rho(-counts + 0.0, items) == pytest.approx(-1.0)


def test_write_mask_writes_the_keep_column_and_reuses_an_existing_file(tmp_path):
    scored = pd.DataFrame({"user": ["a", "b", "c"], "item": ["x", "y", "z"], "timestamp": [1.0, 2.0, 3.0],
                           "weight": [0.5, 1.0, 2.0], "keep": [1, 1, 1]})
    path = write_mask(scored, np.array([True, False, True]), str(tmp_path / "k.csv"))
    assert pd.read_csv(path)["keep"].tolist() == [1, 0, 1]
    assert [p.name for p in tmp_path.iterdir()] == ["k.csv"]  # no temporary file left behind
    write_mask(scored, np.array([False, False, False]), path)
    assert pd.read_csv(path)["keep"].tolist() == [1, 0, 1]  # kept: cached runs were trained on its content
