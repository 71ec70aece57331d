"""The lower-level search (--tune_lower), the per_model sections it writes, and how a run reads them."""

import os

import pytest
import yaml

from recbole_biao.config import PROPERTIES_DIR
from recbole_biao.errors import ConfigError
from recbole_biao.experiments import per_model, tuning
from recbole_biao.quick_start import build_config

STAGES = (("lr x batch", {"learning_rate": (0.01, 0.001), "train_batch_size": (512, 64)}),
          ("pairing", {"pairing": ("stream", "same_user")}))


@pytest.fixture
def dataset_yaml(tmp_path, ml1m_path):
    """A copy of the ml-1m-genres properties file pointing at the converted data, with a hand-written key."""
    text = open(os.path.join(PROPERTIES_DIR, "dataset", "ml-1m-genres.yaml"), encoding="utf-8").read()
    text = text.split("\nper_model:")[0].rstrip("\n") + "\n"  # without the shipped sections
    path = tmp_path / "data.yaml"
    path.write_text(text + f"data_path: {ml1m_path[0]}/\ntrain_batch_size: 256   # hand-written\n", encoding="utf-8")
    return str(path)


def test_a_model_reads_its_own_section_for_every_variant(dataset_yaml, tmp_path):
    with open(dataset_yaml, "a", encoding="utf-8") as f:
        f.write("per_model:\n  MiNet: {learning_rate: 0.01, train_batch_size: 64}\n  CoNet: {learning_rate: 0.003}\n")
    resolved = {}
    for model in ("MiNet", "MiNet-S", "MiNet-0", "CoNet", "DASL", "DeepFM"):
        config = build_config(model, None, [dataset_yaml], {"state": "ERROR"})[1]
        resolved[model] = (config["learning_rate"], config["train_batch_size"])
    assert resolved["MiNet"] == resolved["MiNet-S"] == resolved["MiNet-0"] == (0.01, 64)
    assert resolved["CoNet"] == (0.003, 256)  # its own section, the file's batch size
    assert resolved["DASL"] == resolved["DeepFM"] == (0.001, 256)  # no section: the file's keys
    assert build_config("MiNet", None, [dataset_yaml], {"learning_rate": 0.5})[1]["learning_rate"] == 0.5
    later = tmp_path / "later.yaml"  # a later file overrides the section, and adds to (not replaces) domain blocks
    later.write_text("learning_rate: 0.02\nsource_domain: {USER_ID_FIELD: user_id}\n", encoding="utf-8")
    config = build_config("MiNet", None, [dataset_yaml, str(later)], {"state": "ERROR"})[1]
    assert config["learning_rate"] == 0.02 and config["source_domain"]["dataset"] == "ml-1m-genres-source"


@pytest.mark.parametrize("section,message", [
    ("per_model: [MiNet]", r"'per_model': expected a mapping of model names"),
    ("per_model:\n  MiNet-S: {learning_rate: 0.01}", r"'per_model: MiNet-S': expected a model name without -S / -0"),
    ("per_model:\n  NoNet: {learning_rate: 0.01}", r"unknown model 'NoNet'"),
    ("per_model:\n  MiNet: 0.01", r"'per_model: MiNet': expected a mapping of properties keys"),
    ("per_model:\n  MiNet: {source_domain: {dataset: x}}", r"holds 'source_domain'"),
])
def test_bad_sections_are_one_line_errors_naming_the_file(dataset_yaml, section, message):
    with open(dataset_yaml, "a", encoding="utf-8") as f:
        f.write(section + "\n")
    with pytest.raises(ConfigError, match=message) as error:
        build_config("MiNet", None, [dataset_yaml], {"state": "ERROR"})
    assert dataset_yaml in str(error.value) or "NoNet" in str(error.value)


def test_a_written_section_keeps_the_rest_of_the_file_and_is_read_by_a_later_run(dataset_yaml):
    original = open(dataset_yaml, encoding="utf-8").read()
    per_model.write_section(dataset_yaml, "CoNet", {"learning_rate": 0.003}, ["CoNet: first"])
    per_model.write_section(dataset_yaml, "MiNet", {"learning_rate": 0.01, "train_epochs": ["BOTH:20"]}, ["MiNet"])
    per_model.write_section(dataset_yaml, "CoNet", {"learning_rate": 0.01, "pairing": "same_user"}, ["CoNet: again"])
    text = open(dataset_yaml, encoding="utf-8").read()
    assert text.startswith(original.rstrip("\n"))  # every earlier line byte for byte, comments included
    assert "# CoNet: first" not in text and text.count("CoNet:") == 2  # the section and its comment replaced
    _, sections = per_model.read_sections(dataset_yaml)
    assert sections == {"MiNet": {"learning_rate": 0.01, "train_epochs": ["BOTH:20"]},
                        "CoNet": {"learning_rate": 0.01, "pairing": "same_user"}}
    config = build_config("CoNet-0", None, [dataset_yaml], {"state": "ERROR"})[1]
    assert (config["learning_rate"], config["pairing"], config["train_batch_size"]) == (0.01, "same_user", 256)
    assert build_config("MiNet", None, [dataset_yaml], {"state": "ERROR"})[1]["train_epochs"] == ["BOTH:20"]
    notes = per_model.overridden_keys(dataset_yaml, "CoNet", {"learning_rate": 0.001, "train_batch_size": 64})
    assert notes == ["train_batch_size: the file's 256 is overridden by 64 for CoNet",
                     "per_model.CoNet.learning_rate: 0.01 is replaced by 0.001",
                     "per_model.CoNet.pairing: 'same_user' is replaced by '(removed)'"]


def test_the_section_is_written_to_a_temporary_file_and_renamed(dataset_yaml, monkeypatch):
    before = open(dataset_yaml, "rb").read()
    seen = []

    def interrupted(src, dst):  # the process dies at the rename: the new text is complete, but only in src
        seen.append((os.path.dirname(src), open(src, encoding="utf-8").read(), dst))
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(OSError, match="killed"):
        per_model.write_section(dataset_yaml, "MiNet", {"learning_rate": 0.01}, ["MiNet"])
    monkeypatch.undo()
    folder, text, target = seen[0]
    assert folder == os.path.dirname(dataset_yaml) and target == dataset_yaml
    assert yaml.safe_load(text)["per_model"] == {"MiNet": {"learning_rate": 0.01}}
    assert open(dataset_yaml, "rb").read() == before  # the file is the old one, whole
    assert [p for p in os.listdir(folder) if p.endswith(".tmp")] == []


def fake_runner(calls, collapse=()):
    """A stand-in for training: valid AUC from the settings (lr 0.01 and batch 64 are better), a little seed noise;
    settings in ``collapse`` collapse (valid AUC 0.5 but a high test AUC, so that only the flag keeps them out)."""

    def runner(spec):
        values, seed = spec["config"], spec["seed"]
        calls.append((seed, dict(values)))
        lr, batch = values.get("learning_rate", 0.001), values.get("train_batch_size", 256)
        auc = 0.70 + 0.03 * (lr == 0.01) + 0.01 * (batch == 64) + 0.0005 * (seed - 2023)
        collapsed = (lr, batch) in collapse
        return {"test_result": {"auc": 0.9 if collapsed else auc, "logloss": 0.6},
                "best_valid_result": {"auc": 0.5 if collapsed else auc, "logloss": 0.6},
                "training": {"best_epoch": 2, "last_epoch": 4, "still_improving": False, "collapsed": collapsed}}

    return runner


def test_the_search_confirms_its_winner_on_more_seeds_and_writes_it_and_an_interrupted_one_resumes(
        dataset_yaml, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls = []
    runner = fake_runner(calls, collapse={(0.01, 64)})

    def interrupted(spec):  # Ctrl-C during the fifth trial
        if len(calls) == 4:
            raise KeyboardInterrupt
        return runner(spec)

    with pytest.raises(KeyboardInterrupt):
        tuning.tune_lower("MiNet", None, [dataset_yaml], {"state": "ERROR"}, stages=STAGES, runner=interrupted)
    assert len(calls) == 4 and "per_model" not in open(dataset_yaml, encoding="utf-8").read()
    report = tuning.tune_lower("MiNet", None, [dataset_yaml], {"state": "ERROR"}, max_trials=20, stages=STAGES,
                               runner=runner, command="the command")
    # previous + 4 (lr x batch) + 1 (pairing) + 2 extra seeds for the previous settings and each of 2 finalists;
    # the 4 trials finished before the interruption came from the cache
    assert len(calls) == 4 + (1 + 4 + 1 + 6 - 4)
    assert all(seed == 2023 for seed, _ in calls[:6]) and {seed for seed, _ in calls[6:]} == {2024, 2025}
    # (0.01, 64) collapses and is never chosen; (0.01, 512) is the best trained one
    _, sections = per_model.read_sections(dataset_yaml)
    assert sections["MiNet"] == {"learning_rate": 0.01, "train_batch_size": 512, "pairing": "stream",
                                 "train_epochs": tuning.SCHEDULE["train_epochs"],
                                 "stopping_step": tuning.SCHEDULE["stopping_step"]}
    assert "valid AUC 0.7305 against 0.7005 with the previous settings (mean of seeds 2023, 2024, 2025)" in report
    text = open(dataset_yaml, encoding="utf-8").read()
    assert "# MiNet: --tune_lower on " in text and "valid AUC 0.7305" in text and "#   the command" in text
    assert "train_batch_size: the file's 256 is overridden by 512 for MiNet" in report
    assert open(tmp_path / "log" / "tune" / "MiNet-data.yaml.md", encoding="utf-8").read().strip() == report.strip()
    assert build_config("MiNet-S", None, [dataset_yaml], {"state": "ERROR"})[1]["learning_rate"] == 0.01


def test_the_search_writes_nothing_when_it_cannot_beat_the_previous_settings(dataset_yaml, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(dataset_yaml, "a", encoding="utf-8") as f:  # the previous settings are already the best ones
        f.write("learning_rate: 0.01\n")
    before = open(dataset_yaml, encoding="utf-8").read()
    flat = (("batch", {"train_batch_size": (512, 256)}),)
    report = tuning.tune_lower("CoNet", None, [dataset_yaml], {"state": "ERROR"}, stages=flat,
                               runner=fake_runner([]))
    assert "could not improve on the previous settings" in report and "nothing written" in report
    assert open(dataset_yaml, encoding="utf-8").read() == before


def test_the_budget_stops_the_search_and_a_short_budget_still_decides(dataset_yaml, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls = []
    report = tuning.tune_lower("MiNet", None, [dataset_yaml], {"state": "ERROR"}, max_trials=3, stages=STAGES,
                               write=False, runner=fake_runner(calls))
    assert len(calls) == 3 and "3 trials" in report and "trial budget spent" in report
    assert "(seed 2023)" in report  # no confirmation fitted in the budget: one seed, said so


@pytest.mark.parametrize("args,message", [
    (dict(model="MiNet-S"), r"give the model without -S / -0"),
    (dict(model="MiNet", max_trials=0), r"--max_trials: expected an int >= 1"),
    (dict(model="MiNet", config_dict={"learning_rate": 0.1}), r"searches 'learning_rate'; leave it off"),
])
def test_bad_search_requests_are_refused(args, message, dataset_yaml):
    with pytest.raises(ConfigError, match=message):
        tuning.tune_lower(config_files=[dataset_yaml], runner=fake_runner([]), **args)


def test_the_converter_writes_the_untuned_rule_and_keeps_a_searched_section(tmp_path):
    from dataset_converters.amazon import write_properties
    from recbole_biao.defaults import suggested_settings

    implicit = {"source": True, "target": True}
    path = write_properties(str(tmp_path), "pair", "dataset/", implicit, 80_000, 40_000, log=lambda _: 0)
    top, sections = per_model.read_sections(path)
    # 80,000 rows: 156 steps of 512 for every model; MiNet at most 128, and 0.01 (2 rows per item)
    assert (top["train_batch_size"], top["learning_rate"], top["train_epochs"]) == (512, 0.001, ["BOTH:20"])
    assert sections == {"MiNet": {"train_batch_size": 128, "learning_rate": 0.01}}
    per_model.write_section(path, "MiNet", {"learning_rate": 0.003, "train_batch_size": 64}, ["searched"])
    notes = []
    write_properties(str(tmp_path), "pair", "dataset/", implicit, 80_000, 40_000, log=notes.append)
    assert per_model.read_sections(path)[1]["MiNet"] == {"learning_rate": 0.003, "train_batch_size": 64}
    assert any("kept the existing per_model section of MiNet" in n for n in notes)
    # converting again keeps the file's keys for every model, and adds none of the rule's
    with open(path, encoding="utf-8") as f:
        text = f.read().replace("learning_rate: 0.001\n", "").replace('"BOTH:20"', '"BOTH:8"')
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    write_properties(str(tmp_path), "pair", "dataset/", implicit, 3_000, 100, log=notes.append)
    top = per_model.read_sections(path)[0]
    assert (top["train_batch_size"], top["train_epochs"], "learning_rate" in top) == (512, ["BOTH:8"], False)
    assert top["target_domain"]["dataset"] == "pair-target"  # the rest is written anew
    rule = suggested_settings(3_000, 100)[0]
    with open(path, "w", encoding="utf-8") as f:  # a file with none of these keys (a shipped scenario's) gets the rule
        f.write("".join(line for line in text.splitlines(True) if line.split(":")[0] not in rule))
    assert not set(rule) & set(per_model.read_sections(path)[0])
    write_properties(str(tmp_path), "pair", "dataset/", implicit, 3_000, 100, log=notes.append)
    assert {k: v for k, v in per_model.read_sections(path)[0].items() if k in rule} == rule
    dense_top, dense = suggested_settings(72_000, 271)  # ML-1M's genre split: 265 rows per target item
    assert dense_top["train_batch_size"] == 512 and dense == {"MiNet": {"train_batch_size": 128}}
    small_top, small = suggested_settings(3_000, 100)  # small data: smaller batches, the same for every model
    assert small_top["train_batch_size"] == 64 and small == {}
