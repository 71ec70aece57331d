"""benchmarks/probe_alignment.py: how far the alignment scores of the same rows, users and items agree between
seeds."""

import re

import numpy as np
import pandas as pd

from benchmarks.probe_alignment import stability


def test_stability_tells_a_score_of_the_user_from_a_score_of_the_row():
    """Scores made of a per-user part shared by every seed plus per-row noise drawn anew in each seed agree
    between seeds as users' means, hardly as rows; the item means, which mix users, agree less than the users'."""
    rng = np.random.default_rng(0)
    users = np.repeat([f"u{i}" for i in range(300)], 20)
    items = rng.choice([f"i{i}" for i in range(500)], size=len(users))
    index = pd.MultiIndex.from_arrays([users, items, np.arange(len(users), dtype=float)],
                                      names=["user", "item", "timestamp"])
    effect = pd.Series(rng.normal(size=300), index=[f"u{i}" for i in range(300)])[users].to_numpy()
    ranked = {seed: pd.Series(effect + 4 * np.random.default_rng(seed).normal(size=len(users)), index=index)
              for seed in (1, 2, 3)}
    line = stability(ranked)
    got = re.search(r"Spearman correlation ([-+]\d\.\d{3}) on average over 3 pairs of seeds .*the same users' mean "
                    r"score ([-+]\d\.\d{3}), the same items' ([-+]\d\.\d{3})", line)
    assert got, line
    rows, by_user, by_item = map(float, got.groups())
    # rows: var 1 against 16, so about 1/17; users: the mean of 20 rows, var 1 against 16/20, so about 0.55
    assert abs(rows - 1 / 17) < 0.03 and abs(by_user - 1 / 1.8) < 0.1
    assert by_item < by_user - 0.2
    assert stability({1: ranked[1]}) == ""  # one seed: nothing to compare
