"""End-to-end training on the real ML-1M genre split: variants, checkpoints, resume."""

import pytest
import torch

from recbole_biao.compat import load_checkpoint
from recbole_biao.data import data_preparation
from recbole_biao.quick_start import run_recbole_biao
from recbole_biao.utils import get_model, get_trainer
from tests.helpers import FAST, build_model as build


@pytest.mark.parametrize("model", ["CoNet", "CoNet-S", "CoNet-0"])
def test_one_epoch_beats_chance(ml1m_path, tmp_path, model):
    result = run_recbole_biao(model, config_dict={**FAST, "data_path": ml1m_path[0], "checkpoint_dir": str(tmp_path)})
    assert result["test_result"]["auc"] > 0.6, result
    assert 0 < result["test_result"]["logloss"] < 0.69


def test_checkpoint_round_trip_with_weights_only(ml1m_loaded, tmp_path):
    config, model, data = build(ml1m_loaded, tmp=tmp_path)
    trainer = get_trainer(None)(config, model)
    _, valid, test = data_preparation(config, data)
    trainer.fit(data_preparation(config, data)[0], valid, saved=True)
    checkpoint = torch.load(trainer.saved_model_file, weights_only=True)
    assert checkpoint["config"]["model"] == "CoNet" and checkpoint["epoch"] == 0
    fresh = get_model("CoNet")(config, ml1m_loaded[1])
    fresh.load_state_dict(checkpoint["state_dict"])
    batch = next(iter(test))
    assert torch.equal(fresh.predict(batch), model.predict(batch))
    assert trainer.evaluate(test, load_best_model=True) == get_trainer(None)(config, fresh).evaluate(test, False)


@pytest.mark.parametrize("learner", ["adam", "sparse_adam"])
def test_resume_continues_like_an_uninterrupted_run(ml1m_loaded, tmp_path, learner):
    def run(epochs, resume=None, folder="a"):
        config, model, data = build(ml1m_loaded, tmp=tmp_path / folder, train_epochs=[f"BOTH:{epochs}"],
                                    stopping_step=10, learner=learner, train_batch_size=2048)  # (fewer steps)
        trainer = get_trainer(None)(config, model)
        if resume:
            trainer.resume_checkpoint(resume)
        train, valid, _ = data_preparation(config, data)
        trainer.fit(train, valid, saved=True)
        return model, trainer

    full, _ = run(2, folder="full")
    _, first = run(1, folder="part")  # "interrupted" after one epoch
    resumed, _ = run(2, resume=first.resume_file, folder="part")
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert load_checkpoint(first.resume_file)["epoch"] == 1  # the resumed run wrote its last epoch (0-based) there
    untrained = build(ml1m_loaded, tmp=tmp_path / "fresh", learner=learner)[1]
    assert any(not torch.equal(p, q) for p, q in zip(full.parameters(), untrained.parameters()))  # it trained


@pytest.mark.parametrize("rows", [1, 5_000, 12_000, 30_000, 51_200, 71_830, 10**7])
def test_suggested_batch_size_gives_enough_steps(rows):
    from recbole_biao.defaults import MIN_STEPS_PER_EPOCH, suggested_batch_size

    batch = suggested_batch_size(rows)
    assert batch in (64, 128, 256, 512)
    steps = -(-rows // batch)
    assert steps >= MIN_STEPS_PER_EPOCH or batch == 64  # enough steps, unless at the smallest batch
    assert batch == 512 or rows / (2 * batch) < MIN_STEPS_PER_EPOCH  # and the largest batch that gives them


def test_too_few_steps_per_epoch_warn_with_the_suggested_batch(ml1m_loaded, tmp_path, caplog):
    import logging

    for batch, warned in ((4096, True), (512, False)):
        config, model, data = build(ml1m_loaded, tmp=tmp_path, train_batch_size=batch)
        trainer = get_trainer(None)(config, model)
        trainer.train_data = data_preparation(config, data)[0]
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            trainer.check_steps_per_epoch(len(trainer.train_data))
        assert ("--train_batch_size=512" in caplog.text) == warned, caplog.text


def test_checkpoint_names_are_unique_per_run_and_name_the_variant(ml1m_loaded, tmp_path):
    names = []
    for model in ("CoNet-S", "CoNet-0", "CoNet", "CoNet"):  # created within the same second
        config, net, _ = build(ml1m_loaded, model, tmp=tmp_path)
        names.append(get_trainer(None)(config, net).saved_model_file)
    assert len(set(names)) == 4
    assert [n.split("/")[-1].split("-")[1] for n in names[:2]] == ["S", "0"]


def test_last_state_every_epoch_and_a_finished_resume_keeps_the_best_checkpoint(ml1m_loaded, tmp_path):
    config, model, data = build(ml1m_loaded, tmp=tmp_path, train_epochs=["BOTH:3"], eval_step=2, stopping_step=10)
    trainer = get_trainer(None)(config, model)
    train, valid, test = data_preparation(config, data)
    trainer.fit(train, valid, saved=True)
    assert load_checkpoint(trainer.resume_file)["epoch"] == 2  # epoch 2 was not evaluated, and is saved
    best = load_checkpoint(trainer.saved_model_file)
    assert best["epoch"] == 1  # the one evaluated epoch

    config, model, data = build(ml1m_loaded, tmp=tmp_path, train_epochs=["BOTH:3"], eval_step=2, stopping_step=10)
    again = get_trainer(None)(config, model)
    again.resume_checkpoint(trainer.resume_file)  # a finished run: nothing left to train
    again.fit(*data_preparation(config, data)[:2], saved=True)
    kept = load_checkpoint(trainer.saved_model_file)
    assert kept["epoch"] == 1
    for name, tensor in best["state_dict"].items():
        assert torch.equal(tensor, kept["state_dict"][name]), name


def test_resume_refuses_wrong_files_with_one_line(ml1m_loaded, tmp_path):
    from recbole_biao.errors import DataError

    config, model, data = build(ml1m_loaded, tmp=tmp_path)
    trainer = get_trainer(None)(config, model)
    trainer.fit(*data_preparation(config, data)[:2], saved=True)
    truncated = tmp_path / "cut-last.pth"
    truncated.write_bytes(open(trainer.resume_file, "rb").read()[:1000])  # a save killed half way
    cases = [
        ("CoNet", {}, str(tmp_path / "nope-last.pth"), r"checkpoint '.*nope-last.pth' not found"),
        ("CoNet", {}, str(truncated), r"is not a readable recbole-biao checkpoint"),
        ("CoNet", {}, trainer.saved_model_file, r"is a best-valid checkpoint; resume from the run's '-last.pth'"),
        ("MiNet", {}, trainer.resume_file, r"was saved with model = 'CoNet', this run has 'MiNet'"),
        ("CoNet-S", {}, trainer.resume_file, r"was saved with variant = 'base', this run has 'S'"),
        ("CoNet", {"learning_rate": 0.02}, trainer.resume_file, r"was saved with learning_rate = 0.001, this run has 0.02"),
    ]
    for model_name, values, path, message in cases:
        config, net, _ = build(ml1m_loaded, model_name, tmp=tmp_path, **values)
        with pytest.raises(DataError, match=message):
            get_trainer(None)(config, net).resume_checkpoint(path)
    config, net, _ = build(ml1m_loaded, tmp=tmp_path, train_epochs=["BOTH:3"])  # longer: allowed
    get_trainer(None)(config, net).resume_checkpoint(trainer.resume_file)


def test_a_save_killed_half_way_leaves_the_previous_checkpoint(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "run-last.pth"
    code = ("import torch, sys; from recbole_biao.compat import save_checkpoint; "
            "save_checkpoint(sys.argv[1], {'config': {}, 'state_dict': {'w': torch.zeros(3)}}); "
            "print('first', flush=True); "
            "save_checkpoint(sys.argv[1], {'config': {}, 'state_dict': {'w': torch.ones(400_000_000 // 4)}})")
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "first"
    deadline = time.time() + 60
    while not any(p.stat().st_size > 0 for p in tmp_path.glob(".run-last.pth.*")) and time.time() < deadline:
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)  # in the middle of writing the second checkpoint
    child.wait()
    assert torch.equal(load_checkpoint(str(path))["state_dict"]["w"], torch.zeros(3))


def test_adam_is_torchs_fused_kernel_with_the_same_steps_as_the_plain_one(ml1m_loaded, tmp_path):
    import copy

    config, model, data = build(ml1m_loaded, tmp=tmp_path, weight_decay=0.01)
    trainer = get_trainer(None)(config, model)
    assert trainer.optimizer.defaults["fused"] is True
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.01  # the properties still reach it
    twin = copy.deepcopy(model)
    start = model.item_tables["target"].weight.detach().clone()
    plain = torch.optim.Adam(twin.parameters(), lr=config["learning_rate"], weight_decay=0.01)
    batch = next(iter(data_preparation(config, data)[0]))
    for net, optimizer in ((model, trainer.optimizer), (twin, plain)):
        for _ in range(3):
            optimizer.zero_grad()
            target, source = net.calculate_loss(batch)
            (target + source).backward()
            optimizer.step()
    for fused, reference in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(fused, reference, rtol=1e-5, atol=1e-6)
    assert not torch.equal(model.item_tables["target"].weight, start)  # (the steps did move the parameters)


def test_a_collapsed_run_is_named_stopped_and_flagged(ml1m_loaded, tmp_path, caplog):
    import logging

    config, model, data = build(ml1m_loaded, "CoNet-S", tmp=tmp_path, train_epochs=["BOTH:6"], stopping_step=0)
    with torch.no_grad():  # every unit of the last hidden layer dead: the model predicts its head's bias alone
        model.target_layers[-1].bias.fill_(-1e3)
    trainer = get_trainer(None)(config, model)
    train, valid, _ = data_preparation(config, data)
    with caplog.at_level(logging.WARNING):
        trainer.fit(train, valid, saved=False)
    assert trainer.collapsed and trainer.best_valid_result["auc"] == 0.5
    assert trainer.last_epoch == 0  # stopped after stopping_step + 1 constant evaluations, not after 6 epochs
    assert "collapsed run" in caplog.text and "predicts the same click probability" in caplog.text


def test_a_run_whose_last_epoch_was_its_best_says_it_was_still_improving(ml1m_path, tmp_path, caplog):
    import logging

    values = {**FAST, "data_path": ml1m_path[0], "checkpoint_dir": str(tmp_path), "train_epochs": ["BOTH:1"]}
    with caplog.at_level(logging.WARNING):
        result = run_recbole_biao("CoNet-S", config_dict=values)
    assert result["training"] == {"best_epoch": 0, "last_epoch": 0, "still_improving": True, "collapsed": False}
    assert "still improving" in caplog.text and "raise train_epochs" in caplog.text


def test_runs_in_one_process_load_the_data_once_and_train_as_a_fresh_process_would(ml1m_path, tmp_path):
    from recbole_biao.data import load_data
    from tests.helpers import config_for

    values = {**FAST, "data_path": ml1m_path[0], "checkpoint_dir": str(tmp_path)}
    first = run_recbole_biao("CoNet-S", config_dict=values)
    config = config_for(ml1m_path[0], "CoNet-S")[1]
    dataset, data = load_data(config)
    assert load_data(config_for(ml1m_path[0], "MiNet")[1]) == (dataset, data)  # another model: the same objects
    seeded = load_data(config_for(ml1m_path[0], "CoNet-S", seed=7)[1])
    assert seeded[0] is dataset and seeded[1] is not data  # the protocol's draws follow the seed
    again = run_recbole_biao("CoNet-S", config_dict=values)  # on the data loaded by the first run
    assert again["test_result"] == first["test_result"] and again["best_valid_result"] == first["best_valid_result"]


def test_train_seed_changes_the_training_draws_and_not_the_data(ml1m_path, tmp_path):
    import numpy as np

    from recbole_biao.data import load_data
    from recbole_biao.quick_start import predictions_file

    values = {**FAST, "data_path": ml1m_path[0], "checkpoint_dir": str(tmp_path)}
    runs = {name: run_recbole_biao("CoNet", config_dict={**values, **extra})
            for name, extra in (("default", {}), ("same", {"train_seed": 2023}), ("other", {"train_seed": 7}))}
    arrays = {name: np.load(predictions_file(run["model_file"])) for name, run in runs.items()}
    assert runs["same"]["test_result"] == runs["default"]["test_result"]  # unset: the seed's own draws
    assert runs["other"]["test_result"]["auc"] != runs["default"]["test_result"]["auc"]
    assert not np.allclose(arrays["other"]["valid_scores"], arrays["default"]["valid_scores"])
    for split in ("valid", "test"):  # the same rows, in the same order: only the model differs
        for field in ("labels", "users"):
            np.testing.assert_array_equal(arrays["other"][f"{split}_{field}"], arrays["default"][f"{split}_{field}"])
    # the data under a shuffled split, which follows the seed: train_seed leaves it as the seed draws it
    from recbole_biao.data import build_cdr_data
    from tests.helpers import config_for

    shuffled = {"eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "labeled"}}
    dataset = load_data(config_for(ml1m_path[0], "CoNet")[1])[0]
    default, fresh, seeded = (build_cdr_data(dataset, config_for(ml1m_path[0], "CoNet", **shuffled, **extra)[1])
                              for extra in ({}, {"train_seed": 7}, {"seed": 7}))
    for split in ("train_target", "valid", "test"):
        np.testing.assert_array_equal(fresh.splits[split].item, default.splits[split].item)
        np.testing.assert_array_equal(fresh.splits[split].user, default.splits[split].user)
    assert (seeded.splits["valid"].item != default.splits["valid"].item).any()
