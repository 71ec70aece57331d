"""The controls that learn-then-select's cutoffs are judged against (recbole_biao.experiments.controls)."""

import numpy as np
import pandas as pd
import pytest

from recbole_biao.experiments.controls import (item_count_rho, per_user_keep, random_keep, rare_items_keep,
                                               seed_agreement, write_mask)


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


def _bench_select_random(*arguments, check=True):
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "benchmarks/bench_select_random.py", *arguments], capture_output=True,
                          text=True, check=check, cwd=root)


def test_bench_select_random_pools_the_per_seed_tables_of_its_pages(tmp_path):
    """``--from_pages`` reads both per-seed tables of each page (a cell of several runs counts as their mean) and
    gives the paired t-tests over the candidates of all pages (checked against scipy on the same numbers); a page
    given twice, a broken row and a page of another script are refused with the file (and line)."""
    from scipy import stats

    ranking = ("candidate", "random", "per user", "rare items", "keep all", "reseeded")
    arms = ("candidate", "random", "per user", "rare items", "no cutoff", "reseed", "reseed only")
    rng = np.random.default_rng(3)
    pages, cand, rand, keep, guard_cand, guard_rand = [], [], [], [], [], []
    for name, seeds in (("a", (2023, 2024, 2025)), ("b", (2023, 2026))):
        first = ["| seed | candidate | chosen | dropped | rho (weight, item count) | "
                 + " | ".join(ranking) + " |", "|---|" * 12]
        second = ["| seed | " + " | ".join(f"{a} pipeline: chose, test AUC" for a in arms) + " |"]
        for seed in seeds:
            v = rng.uniform(0.53, 0.56, size=14).round(4)
            draws = v[1], v[2]
            cand.append(v[0]), rand.append(np.mean(draws)), keep.append(v[5])
            first.append(f"| {seed} | weight < 1.02 (gap) | no | 10,559 of 21,698 | +0.69 | {v[0]:.4f} | "
                         f"{np.mean(draws):.4f} ({draws[0]:.4f}, {draws[1]:.4f}) | {v[3]:.4f} | {v[4]:.4f} | "
                         f"{v[5]:.4f} | 0.5400 (0.5401, 0.5399) |")
            guard_cand.append(v[6]), guard_rand.append(np.mean(v[7:9]))
            second.append(f"| {seed} | cutoff {v[6]:.4f} | keep all {v[7]:.4f} / drop all {v[8]:.4f} | "
                          + " | ".join(f"keep all {x:.4f}" for x in v[9:14]) + " (the pipeline itself chose cutoff) |")
        path = tmp_path / f"{name}.md"
        path.write_text("\n".join(["# page", "", *first, "", "## The guard replayed with each control", "",
                                   *second]) + "\n")
        pages.append(str(path))
    out = _bench_select_random("--from_pages", ",".join(pages)).stdout
    assert "5 cutoff candidates" in out
    # the cells hold the draws rounded to 4 places, so their mean can differ from the printed mean in the 5th
    d = np.array(cand) - np.array(rand)
    p = stats.ttest_rel(cand, rand).pvalue
    assert f"- candidate - random: {d.mean():+.4f} AUC (paired t-test p = {p:.3g};" in out
    d = np.array(guard_cand) - np.array(guard_rand)
    assert (f"- candidate pipeline - random pipeline: {d.mean():+.4f} AUC (paired t-test p = "
            f"{stats.ttest_rel(guard_cand, guard_rand).pvalue:.3g};") in out
    assert (f"- candidate pipeline - keep all (Base): {np.mean(np.array(guard_cand) - keep):+.4f} AUC" in out)
    assert "## b.md (2 candidates)" in out

    twice = _bench_select_random("--from_pages", f"{pages[0]},{pages[0]}", check=False)
    assert twice.returncode != 0 and "a page is given twice" in twice.stderr
    broken = tmp_path / "broken.md"
    text = open(pages[0]).read().splitlines()
    text[4] = text[4].replace("| 0.5", "| n/a", 1)  # seed 2023's candidate cell (line 5)
    broken.write_text("\n".join(text) + "\n")
    got = _bench_select_random("--from_pages", str(broken), check=False)
    assert got.returncode != 0 and f"{broken}, line 5: expected a seed and 6 AUC cells" in got.stderr
    other = tmp_path / "other.md"
    other.write_text("# a page of another script\n\n| seed | AUC |\n| 2023 | 0.5 |\n")
    got = _bench_select_random("--from_pages", str(other), check=False)
    assert got.returncode != 0 and f"--from_pages {other}: no section" in got.stderr
    assert len(got.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("page", ["select-random-movies-books-conet", "select-random-food-kitchen-conet"])
def test_bench_select_random_reads_its_committed_pages_back_to_their_own_numbers(page):
    """The pages' tables round each AUC to 4 places; pooled from one page, the paired means equal those the page
    printed from the unrounded runs."""
    import os
    import re

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "results", f"{page}.md")
    written = open(path, encoding="utf-8").read()
    out = _bench_select_random("--from_pages", path).stdout
    for label in ("candidate - rare items", "candidate pipeline - keep all (Base)",
                  "no cutoff pipeline - keep all (Base)"):
        mine = float(re.search(re.escape(f"- {label}: ") + r"([-+][0-9.]+) AUC", out).group(1))
        theirs = float(re.search(re.escape(f"- {label}: ") + r"([-+][0-9.]+) AUC", written).group(1))
        assert abs(mine - theirs) <= 0.00015, (label, mine, theirs)


def test_seed_agreement_tells_a_score_of_the_user_from_a_score_of_the_row():
    """Scores made of a per-user part shared by every seed plus per-row noise drawn anew in each seed agree
    between seeds as users' means, hardly as rows; the items' means, which mix users, agree less than the users'."""
    rng = np.random.default_rng(0)
    users = np.repeat([f"u{i}" for i in range(300)], 20)
    items = rng.choice([f"i{i}" for i in range(500)], size=len(users))
    index = pd.MultiIndex.from_arrays([users, items, np.arange(len(users), dtype=float)],
                                      names=["user", "item", "timestamp"])
    effect = pd.Series(rng.normal(size=300), index=[f"u{i}" for i in range(300)])[users].to_numpy()
    scores = {seed: pd.Series(effect + 4 * np.random.default_rng(seed).normal(size=len(users)), index=index)
              for seed in (1, 2, 3)}
    rows, by_user, by_item = (np.mean(seed_agreement(scores, by)) for by in (None, "user", "item"))
    assert len(seed_agreement(scores)) == 3  # every two of three seeds
    # rows: variance 1 shared against 16 drawn anew, so about 1/17; a user's mean of 20 rows: 1 against 16/20
    assert abs(rows - 1 / 17) < 0.03 and abs(by_user - 1 / 1.8) < 0.1
    assert by_item < by_user - 0.2
    assert seed_agreement({1: scores[1]}) == []  # one seed: nothing to compare
