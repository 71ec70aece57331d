"""Comparison statistics, tables, the run cache and the weight plots."""

import csv
import json
import math

import numpy as np
import pytest

from recbole_biao.evaluation import rela_impr
from recbole_biao.experiments.compare import (Row, RunCache, baseline_rows, comparison_table, forget_settings,
                                             paired_p_value, run_rows, to_markdown, write_table)
from recbole_biao.experiments.commands import parse_sweep
from recbole_biao.experiments.weights import analyse
from recbole_biao.errors import ConfigError, DataError


def test_rela_impr_by_hand():
    assert rela_impr(0.7, 0.6) == pytest.approx(100.0)
    assert rela_impr(0.55, 0.6) == pytest.approx(-50.0)
    assert rela_impr(0.7639, 0.7557) == pytest.approx(3.21, abs=0.005)  # paper Table 1, MiNet+ours vs MiNet-S


def test_paired_t_test_by_hand():
    a, b = [1.0, 2.0, 3.0, 4.0], [1.1, 1.9, 2.7, 3.5]
    d = np.subtract(a, b)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    # Student t with 3 degrees of freedom: F(t) = 1/2 + (x/(1 + x^2) + atan(x)) / pi, x = t / sqrt(3)
    x = abs(t) / math.sqrt(3)
    p = 2 * (1 - (0.5 + (x / (1 + x * x) + math.atan(x)) / math.pi))
    assert paired_p_value(a, b) == pytest.approx(p, rel=1e-9)
    assert math.isnan(paired_p_value([0.7], [0.6]))


def results(values):
    return {label: [{"auc": v} for v in vs] for label, vs in values.items()}


def test_table_star_and_markdown(tmp_path):
    res = results({"M-S": [0.60, 0.61, 0.62], "M-0": [0.60, 0.60, 0.61], "M": [0.62, 0.63, 0.63],
                   "M+BIAO": [0.65, 0.66, 0.67]})
    table = comparison_table(res, "M-S", "M+BIAO", ["M-S", "M-0", "M"])
    labels = [row[0] for row in table]
    assert labels == ["M-S", "M-0", "M", "M+BIAO"]
    biao = table[3]
    assert biao[1] == pytest.approx(0.66) and biao[3] == "*" and biao[4] < 0.05
    assert biao[2] == pytest.approx(rela_impr(0.66, 0.61))
    assert table[0][2] == pytest.approx(0.0) and math.isnan(table[0][4])
    md = write_table(table, str(tmp_path / "t"), "title")
    assert "| M+BIAO | 0.6600* | 45.45% |" in md and md.startswith("**title**")
    with open(tmp_path / "t.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[3]["significant"] == "True" and rows[0]["p_value"] == ""
    res["M"][1] = None  # a failed run: an empty line, not a missing one
    res["M+BIAO"][2]["still_improving"] = True
    md = write_table(table, str(tmp_path / "t"), "title", (), res, [7, 8, 9])
    with open(tmp_path / "t-seeds.csv") as f:
        seeds = list(csv.DictReader(f))
    assert md.endswith("per seed: t-seeds.csv") and len(seeds) == 12
    assert [(r["model"], r["seed"], r["auc"]) for r in seeds[6:9]] == [("M", "7", "0.62"), ("M", "8", ""), ("M", "9", "0.63")]
    assert seeds[11]["still_improving"] == "True" and seeds[10]["still_improving"] == ""
    # the paired test is recomputable from the file alone
    pairs = {(r["model"], r["seed"]): float(r["auc"]) for r in seeds if r["auc"]}
    assert paired_p_value([pairs["M+BIAO", s] for s in "789"], [pairs["M-0", s] for s in "789"]) == pytest.approx(
        paired_p_value([0.65, 0.66, 0.67], [0.60, 0.60, 0.61]))
    worse = comparison_table(results({"M-S": [0.6, 0.7], "M+BIAO": [0.61, 0.69]}), "M-S", "M+BIAO", ["M-S"])
    assert worse[1][3] == "" and "0.6500 |" in to_markdown(worse)


def test_run_cache_reuses_finished_runs(tmp_path):
    calls = []

    def runner(spec):
        calls.append(spec)
        return {"test_result": {"auc": 0.5 + spec["seed"] / 10000, "logloss": 0.6}, "model_file": f"run{len(calls)}"}

    cache = RunCache(str(tmp_path / "cache"))
    rows = baseline_rows("CoNet")
    first, _ = run_rows(rows, [1, 2], runner, cache, config_dict={"learning_rate": 0.01}, progress=False)
    assert len(calls) == 10
    entries = sorted((tmp_path / "cache").glob("*.json"))
    runs = {json.loads(p.read_text())["run"] for p in entries}
    assert runs == {f"run{i}" for i in range(1, 11)}  # each entry names the run it came from
    entries[0].write_text('{"spec": {}, "res')  # a truncated entry (a killed write of an older version)
    with pytest.warns(UserWarning, match="discarding unreadable entry"):
        run_rows(rows, [1, 2], runner, cache, config_dict={"learning_rate": 0.01}, progress=False)
    assert len(calls) == 11  # recomputed, once
    calls.pop()
    again, _ = run_rows(rows, [1, 2], runner, cache, config_dict={"learning_rate": 0.01}, progress=False)
    assert len(calls) == 10 and again == first
    run_rows(rows, [1, 2, 3], runner, cache, config_dict={"learning_rate": 0.01}, progress=False)
    assert len(calls) == 15  # only the new seed
    run_rows([Row("CoNet", "CoNet")], [1], runner, cache, config_dict={"learning_rate": 0.02}, progress=False)
    assert len(calls) == 16  # a changed configuration reruns


def test_the_run_cache_keeps_ranking_runs_and_drops_entries_without_a_metric(tmp_path):
    calls = []

    def runner(spec):
        calls.append(spec)
        return {"test_result": {"recall@10": 0.1, "ndcg@10": 0.05}, "best_valid_result": {"ndcg@10": 0.06},
                "model_file": None}

    cache, rows = RunCache(str(tmp_path / "cache")), [Row("CMF", "CMF", None, {"eval_args": {"mode": "full"}})]
    for _ in range(2):
        results, _ = run_rows(rows, [1], runner, cache, progress=False)
        assert len(calls) == 1 and results["CMF"] == [{"recall@10": 0.1, "ndcg@10": 0.05}]
    entry = next((tmp_path / "cache").glob("*.json"))
    entry.write_text(json.dumps({**json.loads(entry.read_text()), "result": {"recall@10": "0.1"}}))
    with pytest.warns(UserWarning, match="discarding unreadable entry"):
        run_rows(rows, [1], runner, cache, progress=False)
    assert len(calls) == 2


def test_the_run_cache_reruns_when_the_data_under_the_same_properties_change(tmp_path):
    calls = []

    def runner(spec):
        calls.append(spec)
        return {"test_result": {"auc": 0.6, "logloss": 0.6}, "model_file": None}

    for domain in ("src", "tgt"):
        (tmp_path / "d" / domain).mkdir(parents=True)
        (tmp_path / "d" / domain / f"{domain}.inter").write_text("user_id:token\titem_id:token\nu1\ti1\n")
    pair = tmp_path / "pair.yaml"
    pair.write_text(f"data_path: {tmp_path / 'd'}/\n"
                    "source_domain:\n  dataset: src\ntarget_domain:\n  dataset: tgt\n")
    cache, rows = RunCache(str(tmp_path / "cache")), [Row("CoNet", "CoNet")]
    for expected in (1, 1):
        run_rows(rows, [1], runner, cache, config_files=[str(pair)], progress=False)
        assert len(calls) == expected  # the second time from the cache
    inter = tmp_path / "d" / "tgt" / "tgt.inter"
    inter.write_text(inter.read_text() + "u2\ti1\n")  # converted again, the properties unchanged
    forget_settings()  # (as a new process would: one process resolves each configuration once)
    run_rows(rows, [1], runner, cache, config_files=[str(pair)], progress=False)
    assert len(calls) == 2
    (tmp_path / "d" / "src" / ".src.inter.host-1.tmp").write_text("half")  # an unfinished write changes nothing
    forget_settings()
    run_rows(rows, [1], runner, cache, config_files=[str(pair)], progress=False)
    assert len(calls) == 2


def test_parse_sweep():
    assert parse_sweep("interval=20,100,500") == ("interval", [20, 100, 500])
    with pytest.raises(ConfigError, match="expected key=value1,value2"):
        parse_sweep("interval")
    with pytest.raises(ConfigError, match="--sweep: properties key 'intervl' .*did you mean 'interval'"):
        parse_sweep("intervl=20,100")
    assert parse_sweep("my_knob=1,2", extra_keys=["my_knob"]) == ("my_knob", [1, 2])


def test_weight_plots_and_report_from_a_synthetic_csv(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "w.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user", "item", "category", "user_source_behaviours", "user_target_behaviours", "weight",
                         "recent_source_items", "recent_target_items"])
        for i in range(300):
            writer.writerow([f"u{i % 30}", f"i{i}", ["Drama", "Comedy", "War"][i % 3], rng.integers(1, 100),
                             rng.integers(1, 20), rng.gamma(2.0, 0.5), "a|b", "c"])
    figure3, figure4, report = analyse(str(path), str(tmp_path / "out"), top=3)
    for png in (figure3, figure4):
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    text = open(report).read()
    assert "Highest-weighted behaviours" in text and "recent source: a; b" in text and "Drama" in text
    with pytest.raises(DataError, match="missing column"):
        (tmp_path / "bad.csv").write_text("user,item\nu,i\n")
        analyse(str(tmp_path / "bad.csv"))


def test_weight_analysis_says_whether_the_weights_left_their_initialisation():
    import pandas as pd

    from recbole_biao.experiments.weights import learned_statement

    rng = np.random.default_rng(1)
    initial = rng.normal(size=500)
    untrained = pd.DataFrame({"score": initial * 1.0001 + 1e-6, "initial_score": initial})
    assert "r = 1.000000" in learned_statement(untrained) and "do not read them as learned" in learned_statement(untrained)
    trained = pd.DataFrame({"score": rng.normal(size=500), "initial_score": initial})
    assert "moved away from their initialisation" in learned_statement(trained)
    assert "uniform" in learned_statement(pd.DataFrame({"score": np.zeros(5), "initial_score": initial[:5]}))
    assert "older version" in learned_statement(pd.DataFrame({"score": initial}))


def test_ablation_rows_hold_the_attribution_controls_and_profiles():
    from recbole_biao.experiments.compare import ablation_rows

    rows = {row.label: row for row in ablation_rows("CoNet") + baseline_rows("CoNet")}
    assert rows["BIAO upper lr 0 (control)"].values == {"upper_learning_rate": 0.0}  # in every comparison
    assert rows["BIAO upper lr 0 (control)"].trainer == rows["CoNet+BIAO"].trainer == "BIAO"
    assert rows["BIAO gamma only"].values == {"perceptron_mode": "gamma_only"}
    assert rows["BIAO-paper"].trainer == "BIAO-paper" and rows["BIAO-reference"].trainer == "BIAO-reference"


def test_tables_are_named_after_the_dataset_of_the_config_files(tmp_path):
    from recbole_biao.experiments.commands import dataset_label

    other = tmp_path / "lr.yaml"
    other.write_text("learning_rate: 0.01\n")
    data = tmp_path / "books-toys.yaml"
    data.write_text("target_domain:\n  dataset: books-toys-target\n")
    assert dataset_label(None, [str(data), str(other)]) == "books-toys"
    assert dataset_label("movies-books", [str(data)]) == "movies-books"
    assert dataset_label(None, [str(other)]) == dataset_label(None) == "default"


def test_comparisons_of_different_settings_write_different_tables():
    from recbole_biao.experiments.commands import overrides_label

    a, b = overrides_label({"learning_rate": 0.002}), overrides_label({"learning_rate": 0.003})
    assert a == "-learning_rate=0.002" and a != b and overrides_label({}) == ""
    long = overrides_label({"train_epochs": ["BOTH:5"], "checkpoint_dir": "/a/very/long/folder/name/" * 3})
    assert 1 < len(long) <= 11 and "/" not in long


def test_collapsed_runs_are_left_out_of_the_means_and_marked_and_the_notes_say_so():
    from recbole_biao.experiments.compare import bound_note, mark_collapsed, pair_note, training_notes

    res = {"M-S": [{"auc": 0.60}, {"auc": 0.62}, {"auc": 0.5, "collapsed": True}],
           "M-0": [{"auc": 0.58}, {"auc": 0.60}, {"auc": 0.59}],
           "M": [{"auc": 0.61, "still_improving": True}, {"auc": 0.63}, {"auc": 0.62}]}
    table = mark_collapsed(comparison_table(res, "M-S"), res)
    assert table[0][0] == "M-S (1 of 3 collapsed, left out)" and table[0][1] == pytest.approx(0.61)  # not 0.573
    assert table[2][0] == "M" and table[2][1] == pytest.approx(0.62)
    assert training_notes(res) == [
        "collapsed: M-S, 1 of 3 runs (one constant prediction; left out)",
        "still improving: M, 1 of 3 runs had their best valid AUC at the last epoch (raise train_epochs)"]
    assert bound_note(res, "M-S", "M-0", "M") == ("bound of any weighting or selection of the source loss: "
                                                  "max(M, M-0) = 0.6200; M-S (no source at all) 0.6100")
    # the pair with a collapsed run is left out of the paired test: 2 pairs, differences 0.01 and 0.01
    assert pair_note(res, "M", "M-S") == "M - M-S: +0.0100 AUC (paired t-test p = n/a)"
