"""Learn, then select: the keep file the data layer reads, the bootstrap rule that chooses a candidate."""

import csv
import glob
import json
import os

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from recbole_biao.biao.selection import DROP_ALL, KEEP_ALL, choose, paired_bootstrap
from recbole_biao.data.protocol import Behaviours, selected_rows
from recbole_biao.errors import DataError


def test_the_bootstrap_weights_equal_resampling_the_users_rows():
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(40), 3)
    labels = rng.integers(0, 2, size=len(users)).astype(float)
    a, b = rng.random(len(users)), rng.random(len(users)) + 0.3 * labels
    a, b = np.round(a, 1), np.round(b, 1)  # ties: they count half, as in sklearn's AUC
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
    # select_histories off (the default): the dropped rows still feed the histories
    assert selected.history["source"].item.tolist() == data.history["source"].item.tolist()


def test_select_histories_takes_the_dropped_rows_and_later_rows_of_mostly_dropped_items_out_of_histories(
        ml1m_loaded, ml1m_path, tmp_path):
    from collections import Counter

    from recbole_biao.data import load_data
    from tests.helpers import config_for

    _, _, data = ml1m_loaded
    source, everything = data.splits["train_source"], data.history["source"]
    gone_items = np.unique(source.item)[:40]
    drop = np.isin(source.item, gone_items)
    drop[::7] = True  # and a seventh of the others: their items keep most of their rows
    path = tmp_path / "keep.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["user", "item", "timestamp", "keep"])
        for i in range(len(source)):
            writer.writerow([data.tokens["user"][source.user[i]], data.tokens["source_item"][source.item[i]],
                             repr(source.time[i]), 0 if drop[i] else 1])
    selected = load_data(config_for(ml1m_path[0], keep_file=str(path), select_histories=True)[1])[1]
    # by hand: every source positive, less the dropped training ones and the later ones of the items that lost
    # more than half of their training rows (the 40, and items with few rows that a seventh hit)
    training = set(zip(source.user, source.item, source.time))
    positive = source.label > 0
    dropped = set(zip(source.user[drop & positive], source.item[drop & positive], source.time[drop & positive]))
    listed, lost = Counter(source.item.tolist()), Counter(source.item[drop].tolist())
    expected = {(u, i, t) for u, i, t in zip(everything.user, everything.item, everything.time)
                if (u, i, t) not in dropped and ((u, i, t) in training or lost[i] <= listed[i] / 2)}
    history = selected.history["source"]
    assert set(zip(history.user, history.item, history.time)) == expected and len(history.user) == len(expected)
    assert len(expected) < len(everything.user) - len(dropped)  # later rows of the 40 items were taken out too
    assert selected.history["target"].item.tolist() == data.history["target"].item.tolist()


def test_the_pipeline_resumes_from_its_files_and_shares_a_comparisons_base_runs(tmp_path, monkeypatch):
    from dataset_converters import planted
    from recbole_biao.experiments.parallel import runner as make_runner
    from recbole_biao.experiments.compare import Row, RunCache, run_rows
    from recbole_biao.quick_start import run_recbole_biao

    monkeypatch.chdir(tmp_path)  # (the run cache of --compare lives under the working folder)
    data = planted.write(str(tmp_path / "data"), "planted", users=300, target_per_user=6, planted_share=0.5,
                         corruption="random", seed=3)
    values = {"state": "ERROR", "show_progress": False, "checkpoint_dir": str(tmp_path / "saved"),
              "train_epochs": ["BOTH:2"], "select_epochs": 1, "select_cutoffs": [1.0], "select_bootstrap": 50}
    first = run_recbole_biao("CoNet", None, [data], values, "BIAO-select")
    info = first["selection"]
    assert set(info["candidates"]) == {"keep all", "weight < 1", "drop all"} and info["chosen"] in info["candidates"]
    weight_cut = info["candidates"]["weight < 1"]
    scores = np.loadtxt(info["scores_file"], delimiter=",", skiprows=1, usecols=3)
    assert weight_cut["dropped"] == int((scores < 1.0).sum()) > 0
    keep = np.loadtxt(info["keep_files"]["weight < 1"], delimiter=",", skiprows=1, usecols=(3, 4))
    assert np.array_equal(keep[:, 1] == 0, keep[:, 0] < 1.0)  # the keep file drops exactly the rows below the cutoff
    # the trainer's select_histories (on in BIAO-select.yaml, off in the protocol's defaults) reaches the runs
    # that read a keep file, and only them
    specs = {}
    for name in glob.glob(str(tmp_path / "log" / "compare" / "cache" / "*.json")):
        with open(name, encoding="utf-8") as f:
            spec = json.load(f)["spec"]
        specs[spec["config"].get("keep_file", spec["model"])] = spec["config"]
    assert specs[info["keep_files"]["weight < 1"]]["select_histories"] is True
    assert "select_histories" not in specs["CoNet"] and "select_histories" not in specs["CoNet-0"]
    # keep all and drop all are the plain Base and Base-0 runs: a comparison with the same settings reruns nothing
    calls = []

    def runner(spec):
        calls.append(spec["model"])
        return make_runner(False)(spec)

    # (--compare --selection gives every row the same settings; the pipeline's own runs also carry how they
    # report, which the comparison's rows do not)
    quiet = {k: v for k, v in values.items() if k not in ("state", "show_progress")}
    results, _ = run_rows([Row("CoNet", "CoNet"), Row("CoNet-0", "CoNet-0")], [2023], runner,
                          RunCache(str(tmp_path / "log" / "compare" / "cache")), None, [data], quiet, progress=False)
    assert calls == [] and results["CoNet"][0]["auc"] == info["candidates"]["keep all"]["test_auc"]
    stamp = os.path.getmtime(info["scores_file"])
    again = run_recbole_biao("CoNet", None, [data], {**values, "select_random": True}, "BIAO-select")
    assert os.path.getmtime(info["scores_file"]) == stamp  # stage 1 was not run again
    assert again["selection"]["chosen"] == info["chosen"]  # the same decision, from the cached candidates
    random = np.loadtxt(again["selection"]["keep_files"]["random"], delimiter=",", skiprows=1, usecols=4) \
        if info["chosen"] not in ("keep all", "drop all") else None
    if random is not None:
        assert int((random == 0).sum()) == info["candidates"][info["chosen"]]["dropped"]
    # a properties file that changes only the guard (stage 2) reuses the learned scores as well
    guard = tmp_path / "guard.yaml"
    guard.write_text("select_level: 0.2\nselect_histories: False\n", encoding="utf-8")
    relevel = run_recbole_biao("CoNet", None, [data, str(guard)], values, "BIAO-select")
    assert relevel["selection"]["scores_file"] == info["scores_file"]
    assert os.path.getmtime(info["scores_file"]) == stamp


def test_without_cutoffs_the_guard_alone_chooses_between_base_and_base0_with_no_stage_1(tmp_path, monkeypatch):
    from dataset_converters import planted
    from recbole_biao.data import load_data
    from recbole_biao.biao.selection import interaction_rows
    from recbole_biao.quick_start import build_config, run_recbole_biao

    monkeypatch.chdir(tmp_path)
    data = planted.write(str(tmp_path / "data"), "planted", users=200, target_per_user=6, planted_share=0.5,
                         corruption="random", seed=4)
    values = {"state": "ERROR", "show_progress": False, "checkpoint_dir": str(tmp_path / "saved"),
              "train_epochs": ["BOTH:1"], "select_cutoffs": [], "select_bootstrap": 50, "select_level": 0.49}
    result = run_recbole_biao("CoNet", None, [data], values, "BIAO-select")
    info = result["selection"]
    assert set(info["candidates"]) == {KEEP_ALL, DROP_ALL} and info["scores_file"] is None
    assert not glob.glob(str(tmp_path / "saved" / "selection" / "*"))  # no BIAO run, no scores, no keep file
    rows = len(interaction_rows(load_data(build_config("CoNet", None, [data], values, "BIAO-select")[1])[1]))
    assert info["candidates"][DROP_ALL]["dropped"] == rows > 0
    plain = {k: v for k, v in values.items() if not k.startswith("select_")}
    chosen = run_recbole_biao("CoNet-0" if info["chosen"] == DROP_ALL else "CoNet", None, [data], plain)
    assert result["test_result"]["auc"] == chosen["test_result"]["auc"]
    # its random-drop control drops as many, i.e. all or none: the chosen run itself, no keep file
    control = run_recbole_biao("CoNet", None, [data], {**values, "select_random": True}, "BIAO-select")
    assert control["test_result"]["auc"] == result["test_result"]["auc"] and "random" not in control["selection"][
        "keep_files"]


def test_the_gap_cutoff_is_the_split_of_least_spread_within_the_two_groups():
    from recbole_biao.biao.selection import gap_cutoff

    rng = np.random.default_rng(0)
    for trial in range(20):
        weights = np.exp(rng.normal(size=int(rng.integers(3, 40))) * rng.uniform(0.1, 3))
        if trial % 4 == 0:
            weights = np.concatenate([weights, weights[:3]])  # ties
        cutoff = gap_cutoff(weights)
        low = np.log(weights[weights < cutoff])
        # brute force: every split of the distinct values by the sum of squares within the two groups
        logs = np.log(weights)
        values = np.unique(logs)
        spread = [((logs[logs <= v] - logs[logs <= v].mean()) ** 2).sum() + ((logs[logs > v] - logs[logs > v].mean())
                                                                             ** 2).sum() for v in values[:-1]]
        best = values[int(np.argmin(spread))]
        assert low.max() == pytest.approx(best) and (np.log(weights) < np.log(cutoff)).sum() == (logs <= best).sum()
    # planted rows near 0.1, clean ones near 2: every planted row below the cutoff, every clean one above
    planted, clean = np.exp(rng.normal(np.log(0.1), 0.2, 300)), np.exp(rng.normal(np.log(2), 0.4, 150))
    cutoff = gap_cutoff(np.concatenate([clean, planted]))
    assert planted.max() < cutoff < clean.min()
    assert gap_cutoff(np.ones(5)) == 1.0  # one value: nothing below the cutoff


def test_stable_weights_equal_normalising_every_random_batch_separately(ml1m_loaded):
    import dataclasses

    from recbole.data.interaction import Interaction

    from recbole_biao.biao.selection import stable_weights
    from recbole_biao.data import data_preparation
    from recbole_biao.data.dataloader import make_batch
    from recbole_biao.trainer import BIAOTrainer
    from tests.helpers import build_model

    config, model, data = build_model(ml1m_loaded, "CoNet", trainer="BIAO", score_bound=3.0)
    trainer = BIAOTrainer(config, model)
    trainer.upper.bind(data_preparation(config, data)[0])
    with torch.no_grad():  # a perceptron whose weights differ clearly from uniform
        for p in trainer.upper.perceptron.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    # the first 30,011 source training rows (the full split makes this test take a minute): the same computation
    head, rows = np.arange(30011), data.splits["train_source"]
    data = dataclasses.replace(data, splits={**data.splits, "train_source": rows.take(head)}, bounds={
        **data.bounds, "train_source": {d: (s[head], e[head]) for d, (s, e) in data.bounds["train_source"].items()}})
    batch, n = 997, len(data.splits["train_source"])
    fast = stable_weights(trainer.upper, data, batch, 2, seed=3)
    rng, slow = np.random.default_rng(3), np.zeros(n)
    upper = trainer.upper
    for _ in range(2):  # the reference: every batch through the perceptron on its own, as in training
        order = rng.permutation(n)
        for begin in range(0, n, batch):
            part = order[begin:begin + batch]
            inputs = upper.inputs(Interaction(make_batch(data, "train_source", part, upper.history_length)))
            with torch.no_grad():
                slow[part] += (upper.perceptron(*inputs) * len(part)).numpy()
    assert n % batch and np.std(fast) > 0.05  # a short last batch, and weights far from uniform
    np.testing.assert_allclose(fast, slow / 2, rtol=1e-4, atol=1e-6)
