"""Learn, then select: the keep file the data layer reads, the bootstrap rule that chooses a candidate."""

import csv

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from recbole_biao.biao.selection import DROP_ALL, KEEP_ALL, choose, paired_bootstrap
from recbole_biao.data.protocol import Behaviours, selected_rows
from recbole_biao.errors import DataError


def test_the_bootstrap_weights_equal_resampling_the_users_rows():
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(40), 3)
    labels = rng.integers(0, 2, size=len(users)).astype(float)
    a, b = rng.random(len(users)), rng.random(len(users)) + 0.3 * labels
    p = paired_bootstrap(b, a, labels, users, rounds=200, seed=5)
    # the same draws, as explicit copies of each drawn user's rows
    draws, worse = np.random.default_rng(5), 0
    for _ in range(200):
        picked = draws.integers(40, size=40)
        rows = np.concatenate([np.flatnonzero(users == u) for u in picked])
        worse += roc_auc_score(labels[rows], b[rows]) <= roc_auc_score(labels[rows], a[rows])
    assert p == pytest.approx((worse + 1) / 201)
    assert paired_bootstrap(a, a, labels, users, rounds=50) == 1.0  # never better than itself


def predictions(scores, labels, users):
    return {"scores": scores, "labels": labels, "users": users}


def test_a_candidate_replaces_keep_all_only_beyond_the_noise():
    rng = np.random.default_rng(0)
    n = 3000
    users, labels = np.arange(n), rng.integers(0, 2, size=n).astype(float)
    base = labels * 0.5 + rng.normal(size=n)
    noise = rng.normal(scale=0.05, size=n)
    candidates = {KEEP_ALL: predictions(base, labels, users),
                  "slightly": predictions(base + noise, labels, users),  # the same model, give or take
                  DROP_ALL: predictions(base - labels * 0.3, labels, users)}  # clearly worse
    chosen, p = choose(candidates, level=0.05, rounds=200, seed=0)
    assert chosen == KEEP_ALL and p[DROP_ALL] > 0.9
    candidates["clearly"] = predictions(base + labels * 0.4, labels, users)
    candidates["best"] = predictions(base + labels * 0.8, labels, users)
    chosen, p = choose(candidates, level=0.05, rounds=200, seed=0)
    assert chosen == "best" and p["clearly"] < 0.05 and p["best"] < 0.05  # two qualify: the higher valid AUC


def test_a_keep_file_drops_the_listed_rows_and_keeps_the_unlisted(tmp_path):
    rows = Behaviours(np.array([1, 1, 2, 2]), np.array([5, 6, 5, 5]), np.ones(4, dtype=np.float32),
                      np.array([10.0, 11.0, 12.0, 13.5]))
    users, items = {"u1": 1, "u2": 2}, {"i5": 5, "i6": 6}
    path = tmp_path / "keep.csv"
    path.write_text("user,item,timestamp,keep\nu1,i5,10.0,0\nu1,i6,11.0,1\nu2,i5,13.5,0\nu9,i5,1.0,0\n")
    assert selected_rows(str(path), rows, users, items).tolist() == [False, True, True, False]
    path.write_text("user,item,timestamp,keep\nu1,i5,10.0,yes\n")
    with pytest.raises(DataError, match=r"keep.csv:2: 'keep' must be 0 or 1, got 'yes'"):
        selected_rows(str(path), rows, users, items)
    path.write_text("user,item,keep\nu1,i5,0\n")
    with pytest.raises(DataError, match=r"keep.csv:1: missing column\(s\) \['timestamp'\]"):
        selected_rows(str(path), rows, users, items)


def test_the_protocol_trains_on_the_kept_source_interactions_only(ml1m_loaded, ml1m_path, tmp_path):
    from recbole_biao.data import load_data
    from tests.helpers import config_for

    config, dataset, data = ml1m_loaded
    source = data.splits["train_source"]
    drop = np.zeros(len(source), dtype=bool)
    drop[::7] = True
    path = tmp_path / "keep.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:  # (ML-1M's items are titles, with commas)
        writer = csv.writer(f)
        writer.writerow(["user", "item", "timestamp", "keep"])
        for i in range(len(source)):
            writer.writerow([data.tokens["user"][source.user[i]], data.tokens["source_item"][source.item[i]],
                             repr(source.time[i]), 0 if drop[i] else 1])
    selected = load_data(config_for(ml1m_path[0], keep_file=str(path))[1])[1]  # the key as a user gives it
    kept = selected.splits["train_source"]
    assert len(kept) == len(source) - drop.sum() == len(source) - selected.stats["source_rows_dropped_by_selection"]
    assert np.array_equal(kept.time, source.time[~drop]) and np.array_equal(kept.item, source.item[~drop])
    assert len(selected.splits["test"]) == len(data.splits["test"])  # the target splits are untouched
