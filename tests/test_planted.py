"""End to end on generated data with planted harmful source behaviours: with the default BIAO properties the
perceptron must learn to down-weight them, and the control (upper learning rate 0) must not."""

import os

import numpy as np
import pytest

from dataset_converters import planted
from recbole_biao.quick_start import run_recbole_biao


@pytest.fixture(scope="module")
def planted_yaml(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    return planted.write(str(folder), "planted", users=500, target_per_user=6, planted_share=0.3,
                         corruption="random", seed=1)


def planted_weight_ratio(yaml_path, tmp_path, **values):
    kept = {}
    config = {"show_progress": False, "state": "ERROR", "checkpoint_dir": str(tmp_path), "train_batch_size": 64,
              "train_epochs": ["BOTH:6"], "stopping_step": 100, "interval": 4, "upper_users": 128, **values}
    run_recbole_biao("CoNet", config_file_list=[yaml_path], config_dict=config, trainer="BIAO",
                     trainer_hook=lambda trainer, data: kept.update(trainer=trainer, data=data))
    trainer, data = kept["trainer"], kept["data"]
    rows = np.random.default_rng(0).permutation(len(data.splits["train_source"]))
    weights = trainer.evaluate_weights(rows)
    names = data.tokens["source_category"][data.item_category["source"][data.splits["train_source"].item[rows]]]
    bad = names == planted.PLANTED
    ess = weights.sum() ** 2 / (len(weights) * (weights ** 2).sum())
    return weights[bad].mean() / weights[~bad].mean(), ess, trainer.upper.stats["steps"]


def test_the_perceptron_down_weights_planted_harmful_behaviours(planted_yaml, tmp_path):
    ratio, ess, steps = planted_weight_ratio(planted_yaml, tmp_path)
    assert steps > 30
    assert ratio < 0.8 and ess > 0.5, (ratio, ess)


def test_the_control_keeps_the_weights_uniform(planted_yaml, tmp_path):
    ratio, ess, steps = planted_weight_ratio(planted_yaml, tmp_path, upper_learning_rate=0.0)
    assert steps > 30
    assert 0.97 < ratio < 1.03 and ess > 0.99, (ratio, ess)


def write_tsv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))


def write_rated_pair(tmp_path):
    """40 users with 6 rated source behaviours each (items s0-s3 of category A, s4-s5 of B) and 3 target ones."""
    inter = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    item = ["item_id:token", "category:token"]
    users = [f"u{k}" for k in range(40)]
    source = [(u, f"s{j}", 1 + (k + j) % 5, 10 * j) for k, u in enumerate(users) for j in range(6)]
    write_tsv(tmp_path / "src" / "src.inter", inter, source)
    write_tsv(tmp_path / "src" / "src.item", item, [(f"s{j}", "A" if j < 4 else "B") for j in range(6)])
    write_tsv(tmp_path / "tgt" / "tgt.inter", inter, [(u, f"t{j}", 4, j) for u in users for j in range(3)])
    write_tsv(tmp_path / "tgt" / "tgt.item", item, [(f"t{j}", "T") for j in range(3)])


def test_userflip_flips_only_the_chosen_users_and_the_oracle_drops_exactly_them(tmp_path):
    from dataset_converters.planted_ml1m import read_atomic, write

    write_rated_pair(tmp_path)
    yamls, corrupted, rows, _ = write(str(tmp_path / "src"), str(tmp_path / "tgt"), str(tmp_path / "out"),
                                      ["A"], "userflip", 1.0, user_share=0.5)
    clean, _ = read_atomic(str(tmp_path / "out/planted-clean-source/planted-clean-source.inter"))
    bad, _ = read_atomic(str(tmp_path / "out/planted-corrupt-source/planted-corrupt-source.inter"))
    oracle, _ = read_atomic(str(tmp_path / "out/planted-oracle-source/planted-oracle-source.inter"))
    changed = clean["rating"].astype(int) != bad["rating"].astype(int)
    flipped = (6 - clean["rating"].astype(int)) == bad["rating"].astype(int)
    hit_users = set(bad["user_id"][changed])  # every user has a rating other than 3 in category A
    assert 5 < len(hit_users) < 35  # about half of the 40 users
    chosen = clean["user_id"].isin(hit_users) & clean["item_id"].isin(["s0", "s1", "s2", "s3"])
    assert (flipped | ~chosen).all() and not (changed & ~chosen).any()  # category B and other users untouched
    assert corrupted == int(chosen.sum()) and rows == len(clean)
    kept = set(zip(oracle["user_id"], oracle["item_id"]))
    assert kept == set(zip(clean["user_id"][~chosen], clean["item_id"][~chosen]))


def test_spam_positives_land_only_on_planted_items_of_real_users_and_the_oracle_is_the_real_data(tmp_path):
    import yaml

    from dataset_converters.planted_implicit import PLANTED, write
    from dataset_converters.planted_ml1m import read_atomic

    inter = ["user_id:token", "item_id:token", "timestamp:float"]
    item = ["item_id:token", "category:token", "title:token_seq"]
    users = [f"u{k}" for k in range(30)]
    source = [(u, f"s{j}", 100 + 10 * j) for u in users for j in range(4)]
    write_tsv(tmp_path / "d" / "src" / "src.inter", inter, source)
    write_tsv(tmp_path / "d" / "src" / "src.item", item, [(f"s{j}", "others", "") for j in range(4)])
    write_tsv(tmp_path / "d" / "tgt" / "tgt.inter", inter, [(u, f"t{j}", j) for u in users for j in range(3)])
    write_tsv(tmp_path / "d" / "tgt" / "tgt.item", item, [(f"t{j}", "others", "") for j in range(3)])
    (tmp_path / "pair.yaml").write_text(
        f"data_path: {tmp_path / 'd'}/\ntrain_batch_size: 64\nsource_domain:\n  dataset: src\n"
        "target_domain:\n  dataset: tgt\nper_model:\n  MiNet:\n    learning_rate: 0.01\n")
    yamls, spam, rows, target_rows = write(str(tmp_path / "pair.yaml"), str(tmp_path / "out"), share=0.5, items=5)
    out = tmp_path / "out"
    clean, _ = read_atomic(str(out / "planted-clean-source/planted-clean-source.inter"))
    bad, _ = read_atomic(str(out / "planted-corrupt-source/planted-corrupt-source.inter"))
    oracle, _ = read_atomic(str(out / "planted-oracle-source/planted-oracle-source.inter"))
    items, _ = read_atomic(str(out / "planted-corrupt-source/planted-corrupt-source.item"))
    planted = set(items["item_id"][items["category"] == PLANTED])
    added = bad[len(clean):]
    assert len(planted) == 5 and set(added["item_id"]) <= planted and not clean["item_id"].isin(planted).any()
    assert set(added["user_id"]) <= set(users) and 0 < spam == len(added) <= 60 and rows == len(bad) == 120 + spam
    assert not added.duplicated(["user_id", "item_id"]).any()
    assert set(added["timestamp"]) <= set(clean["timestamp"])  # times of real source rows
    assert oracle.equals(clean) and bad[:len(clean)].equals(clean) and target_rows == 90
    config = yaml.safe_load(open(yamls["corrupt"]))
    assert config["source_domain"]["dataset"] == "planted-corrupt-source" and config["data_path"] == f"{out}/"
    assert config["per_model"] == {"MiNet": {"learning_rate": 0.01}} and config["train_batch_size"] == 64


def test_noise_adds_random_ratings_of_the_chosen_users_on_planted_items_and_the_oracle_is_the_clean_data(tmp_path):
    from dataset_converters.planted_ml1m import PLANTED, read_atomic, write

    write_rated_pair(tmp_path)
    yamls, corrupted, rows, _ = write(str(tmp_path / "src"), str(tmp_path / "tgt"), str(tmp_path / "out"),
                                      ["A"], "noise", 1.0, copies=2, user_share=0.5, planted_items=500)
    out = tmp_path / "out"
    clean, _ = read_atomic(str(out / "planted-clean-source/planted-clean-source.inter"))
    bad, _ = read_atomic(str(out / "planted-corrupt-source/planted-corrupt-source.inter"))
    oracle, _ = read_atomic(str(out / "planted-oracle-source/planted-oracle-source.inter"))
    items, _ = read_atomic(str(out / "planted-corrupt-source/planted-corrupt-source.item"))
    clean_items, _ = read_atomic(str(out / "planted-clean-source/planted-clean-source.item"))
    added = bad[len(clean):]
    assert bad[:len(clean)].equals(clean) and oracle.equals(clean) and rows == len(bad) == len(clean) + corrupted
    assert set(added["item_id"]) <= set(items["item_id"][items["category"] == PLANTED])
    assert PLANTED not in set(clean_items["category"])  # the planted items exist only in the corrupted data
    per_user = added.groupby("user_id").size()
    assert 5 < len(per_user) < 35 and (per_user <= 8).all() and (per_user >= 6).all()  # 2 x 4 in A, few repeats
    assert set(added["rating"].astype(int)) == {1, 2, 3, 4, 5}
    assert set(added["timestamp"].astype(float)) == {0, 10, 20, 30}  # at the times of category A's rows only
    assert not added.duplicated(["user_id", "item_id"]).any()


def planted_ratings(tmp_path, corruption, target_rating, behaviours=3):
    """Plant ``corruption`` rows on the rated pair, user ``k`` rating target behaviour ``j`` (of ``behaviours``)
    as ``target_rating(k, j)``; returns ``(each user's set of planted ratings, rows corrupted, the added rows,
    whether the real source rows are kept unchanged)``."""
    from dataset_converters.planted_ml1m import read_atomic, write

    write_rated_pair(tmp_path)
    users = [f"u{k}" for k in range(40)]
    rows = [(u, f"t{j}", target_rating(k, j), j) for k, u in enumerate(users) for j in range(behaviours)]
    write_tsv(tmp_path / "tgt" / "tgt.inter", ["user_id:token", "item_id:token", "rating:float", "timestamp:float"],
              rows)
    _, corrupted, _, _ = write(str(tmp_path / "src"), str(tmp_path / "tgt"), str(tmp_path / "out"),
                               ["A"], corruption, 1.0, copies=2, user_share=1.0, planted_items=500)
    clean, _ = read_atomic(str(tmp_path / "out/planted-clean-source/planted-clean-source.inter"))
    bad, _ = read_atomic(str(tmp_path / "out/planted-corrupt-source/planted-corrupt-source.inter"))
    added = bad[len(clean):]
    return added.groupby("user_id")["rating"].agg(set), corrupted, added, bad[:len(clean)].equals(clean)


def test_contrary_rates_planted_rows_against_the_users_target_training_taste_never_their_valid_or_test(tmp_path):
    # target: one training behaviour per user (liked by even users) and valid / test behaviours of the opposite
    # taste: a rating read from them would reverse the planted ratings
    rating, corrupted, added, _ = planted_ratings(
        tmp_path, "contrary", lambda k, j: (5 if k % 2 == 0 else 1) if j == 0 else (1 if k % 2 == 0 else 5))
    assert len(rating) == 40 and corrupted == len(added)
    assert all(rating[u] == ({"1"} if int(u[1:]) % 2 == 0 else {"5"}) for u in rating.index)


def test_bias_gives_all_of_a_users_planted_rows_one_random_rating_unrelated_to_the_users_taste(tmp_path):
    rating, corrupted, added, kept = planted_ratings(tmp_path, "bias", lambda k, j: 5 if k % 2 == 0 else 1)
    assert len(rating) == 40 and corrupted == len(added) and kept
    assert all(len(r) == 1 and r <= {"1", "5"} for r in rating)  # one rating per user
    first = {u: next(iter(r)) for u, r in rating.items()}
    likes = {u: int(u[1:]) % 2 == 0 for u in rating.index}
    assert {v for u, v in first.items() if likes[u]} == {"1", "5"}  # not the user's taste: both among likers
    assert {v for u, v in first.items() if not likes[u]} == {"1", "5"}


def test_contrary_source_rates_planted_rows_against_the_users_source_taste_not_their_target_labels(tmp_path):
    # source ratings 1 + (k + j) % 5: users with k % 5 in (3, 4) like 3 of 6, the others 2; their target training
    # taste the other way round: read from the target, the planted ratings would be reversed
    rating, corrupted, added, _ = planted_ratings(tmp_path, "contrary_source",
                                                  lambda k, j: 1 if k % 5 in (3, 4) else 5)
    assert len(rating) == 40 and corrupted == len(added)
    assert all(rating[u] == ({"1"} if int(u[1:]) % 5 in (3, 4) else {"5"}) for u in rating.index)


def test_contrary_heldout_rates_against_target_rows_it_takes_out_of_the_target(tmp_path):
    from dataset_converters.planted_ml1m import read_atomic

    # six target behaviours a user, random ratings: the taste of the rows set aside differs from the kept rows'
    ratings = np.random.default_rng(3).integers(1, 6, size=(40, 6))
    planted, _, _, _ = planted_ratings(tmp_path, "contrary_heldout", lambda k, j: int(ratings[k, j]), behaviours=6)
    rows = [(f"u{k}", f"t{j}", int(ratings[k, j]), j) for k in range(40) for j in range(6)]
    targets = [read_atomic(str(tmp_path / f"out/planted-{n}-target/planted-{n}-target.inter"))[0]
               for n in ("clean", "corrupt", "oracle")]
    assert targets[0].equals(targets[1]) and targets[0].equals(targets[2])  # one target for all three
    kept = set(zip(targets[0]["user_id"], targets[0]["item_id"]))
    aside = [r for r in rows if (r[0], r[1]) not in kept]
    assert all(r[3] < 4 for r in aside)  # valid and test behaviours (the last two) are never set aside
    assert 0.3 < len(aside) / 160 < 0.7 and len(kept) + len(aside) == len(rows)
    liked = {}  # each user's share of positives among the set-aside rows, computed here from the written files
    for user, _, rating, _ in aside:
        liked.setdefault(user, []).append(rating >= 4)
    share = {u: np.mean(v) for u, v in liked.items()}
    median = np.median(list(share.values()))
    assert all(planted[u] == ({"1"} if s > median else {"5"}) for u, s in share.items())
    # the kept rows' taste would rate some users the other way: the set-aside rows decide
    kept_share = targets[0][targets[0]["timestamp"].astype(float) < 4].assign(
        pos=lambda d: d["rating"].astype(float) >= 4).groupby("user_id")["pos"].mean()
    assert any((kept_share[u] > kept_share.median()) != (s > median) for u, s in share.items())


def test_bench_planted_summarises_earlier_pages_over_all_their_seeds(tmp_path):
    """``--from_pages`` reads the per-seed lines of two pages back and gives the paired t-tests of all their seeds
    (checked against scipy on the same numbers); a seed on two pages is refused with the page and line."""
    import subprocess
    import sys
    from scipy import stats

    auc = {"Base corrupted": [0.80, 0.81, 0.79, 0.82], "Base oracle": [0.86, 0.87, 0.84, 0.88],
           "learn, then select": [0.85, 0.81, 0.83, 0.87]}

    def page(path, seeds):
        lines = ["# a page", "", "```"]
        for k, seed in seeds:
            cells = [f"{label} {values[k]:.4f} (3s)" for label, values in auc.items()]
            cells[2] = cells[2].replace(" (3s)", f" [chose 'weight < 1 (gap)', dropped 9; cutoff: 9 dropped, recall "
                                                  f"1.000, precision 0.{k}00, test AUC 0.8{k}00; guard p (valid "
                                                  f"gain): weight < 1 (gap) 0.01 (+0.0100)] (9s)")
            lines.append(f"CoNet seed {seed}:  " + "  ".join(cells))
        path.write_text("\n".join(lines + ["```"]) + "\n")
        return str(path)

    first, second = page(tmp_path / "a.md", [(0, 2023), (1, 2024)]), page(tmp_path / "b.md", [(2, 2028), (3, 2029)])
    script = [sys.executable, "benchmarks/bench_planted.py", "--model", "CoNet", "--rows", "base,oracle,select"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(script + ["--from_pages", f"{first},{second}"], capture_output=True, text=True, check=True,
                         cwd=root).stdout
    base, select = np.array(auc["Base corrupted"]), np.array(auc["learn, then select"])
    gap = np.mean(auc["Base oracle"]) - base.mean()
    assert "seeds 2023, 2024, 2028, 2029" in out
    assert f"share of the reachable gap {(select.mean() - base.mean()) / gap:+.2f}" in out
    assert f"paired t-test p = {stats.ttest_rel(select, base).pvalue:.3g})" in out
    assert "precision 0.150" in out  # the mean of the four pages' precisions
    twice = subprocess.run(script + ["--from_pages", f"{first},{first}"], capture_output=True, text=True, cwd=root)
    assert twice.returncode != 0 and "a.md, line 4: CoNet seed 2023 is on an earlier page too" in twice.stderr


def test_bench_planted_trains_every_seed_on_one_draw_unless_each_seed_draws_its_own(tmp_path):
    """By default the generated data are one draw for every seed (a fixed seed's runs then score alike whatever
    the data seed would be); ``--data_seeds`` writes and trains on one draw per seed."""
    import filecmp
    import re
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = [sys.executable, "benchmarks/bench_planted.py", "--model", "CoNet", "--rows", "base", "--seeds", "2",
              "--users", "120", "--epochs", "1", "--all", "train_seed=5"]

    def aucs(*extra, out):
        text = subprocess.run(script + ["--out", str(out), *extra], capture_output=True, text=True, check=True,
                              cwd=root).stdout
        return [float(a) for a in re.findall(r"CoNet seed \d+:  Base corrupted (\d\.\d+)", text)]

    one = aucs(out=tmp_path / "one")
    own = aucs("--data_seeds", out=tmp_path / "own")
    assert len(one) == len(own) == 2
    assert one[0] == one[1]  # the same training seed on the same data: the seed changed nothing else
    assert own[0] != own[1]  # the same training seed, each seed's own data
    drawn = [tmp_path / "own" / f"data{s}" / "planted-corrupt-source" / "planted-corrupt-source.inter"
             for s in (2023, 2024)]
    assert not filecmp.cmp(*drawn, shallow=False)
