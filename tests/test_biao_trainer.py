"""The BIAO trainer on the real ML-1M genre split: isolation of the two levels, the upper level's batches and
switches, resume, checkpoints, properties-only switch, weight log and diagnostics."""

import csv
import logging

import numpy as np
import pytest
import torch

from recbole_biao.data import data_preparation
from recbole_biao.errors import ConfigError, ContractError
from recbole_biao.quick_start import build_config, run_recbole_biao
from recbole_biao.model.abstract import check_contract
from recbole_biao.trainer import BIAOTrainer
from tests.helpers import FAST, build_model


def biao(ml1m_loaded, tmp=None, model="CoNet", **values):
    config, model, data = build_model(ml1m_loaded, model, tmp, trainer="BIAO", **values)
    trainer = BIAOTrainer(config, model)
    train, valid, test = data_preparation(config, data)
    trainer.upper.bind(train)
    return config, model, trainer, data, train


def snapshot(params):
    return [p.detach().clone() for p in params]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_levels_are_isolated(ml1m_loaded):
    config, model, trainer, data, train = biao(ml1m_loaded, interval=10**9)
    perceptron = list(trainer.perceptron.parameters())
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in perceptron}
    assert optimised == {id(p) for p in model.parameters()}
    assert model.perceptron is trainer.perceptron and not any(k.startswith("perceptron") for k in model.state_dict())

    phi, theta = snapshot(perceptron), snapshot(model.parameters())
    trainer.train_epoch(train, 0)  # lower steps only (interval never reached)
    assert same(phi, perceptron) and not same(theta, model.parameters())

    theta = snapshot(model.parameters())
    record = trainer.upper.step()
    assert same(theta, model.parameters()) and not same(phi, perceptron)
    assert trainer.upper.stats["steps"] == 1 and record["relative_change"] > 0


@pytest.mark.parametrize("learner", ["adam", "sgd"])
def test_control_with_upper_learning_rate_zero_leaves_the_perceptron_unchanged(ml1m_loaded, learner):
    _, _, trainer, _, train = biao(ml1m_loaded, upper_learning_rate=0.0, upper_learner=learner, interval=20)
    phi = snapshot(trainer.perceptron.parameters())
    trainer.train_epoch(train, 0)
    assert trainer.upper.stats["steps"] == len(train) // 20 > 0
    assert same(phi, trainer.perceptron.parameters())
    assert trainer.upper.probe_report()["correlation"] == pytest.approx(1.0)


def test_upper_learner_is_chosen_by_name(ml1m_loaded):
    assert isinstance(biao(ml1m_loaded, upper_learner="sgd")[2].upper.optimizer, torch.optim.SGD)
    assert isinstance(biao(ml1m_loaded, upper_learner="adam")[2].upper.optimizer, torch.optim.Adam)
    with pytest.raises(ConfigError, match="'upper_learner': expected one of"):
        biao(ml1m_loaded, upper_learner="lbfgs")


def test_gamma_only_gives_uniform_weights_and_learns_only_gamma(ml1m_loaded):
    _, _, trainer, _, train = biao(ml1m_loaded, perceptron_mode="gamma_only")
    assert [name for name, _ in trainer.perceptron.named_parameters()] == ["gamma_raw"]
    before = trainer.perceptron.gamma.item()
    for _ in range(3):
        trainer.upper.step()
    batch = next(iter(train)).to(trainer.device)
    weights = trainer.upper.weights(batch)
    gamma = trainer.perceptron.gamma.item()
    assert gamma != before
    assert torch.allclose(weights, torch.full_like(weights, gamma / len(weights)))


@pytest.mark.parametrize("method", ["identity", "neumann"])
def test_matched_upper_batches_hold_the_same_users(ml1m_loaded, method):
    _, _, trainer, data, _ = biao(ml1m_loaded, upper_batching="matched", upper_users=50, upper_source_per_user=3,
                                  hypergrad_method=method)
    dev, fresh = trainer.upper.batch_pair()
    users = set(dev["target_user_id"].tolist())
    assert len(users) == 50 and set(fresh["source_user_id"].tolist()) == users
    if method == "neumann":  # the fresh target rows enter the Hessian only
        assert set(fresh["target_user_id"].tolist()) == users
    else:
        assert "target_user_id" not in fresh.interaction
    per_user = np.bincount(fresh["source_user_id"].numpy())
    available = np.bincount(data.splits["train_source"].user, minlength=len(per_user))
    assert (per_user[list(users)] == np.minimum(3, available[list(users)])).all()
    # the dev batch is every target training behaviour of those users
    rows = data.splits["train_target"]
    assert len(dev["target_user_id"]) == int(np.isin(rows.user, list(users)).sum())


def test_dev_cap_samples_each_users_dev_rows_and_leaves_the_fresh_batch(ml1m_loaded):
    pairs = {}
    for cap in (None, 2):
        _, _, trainer, data, _ = biao(ml1m_loaded, upper_users=64, upper_dev_per_user=cap)
        pairs[cap] = [trainer.upper.batch_pair() for _ in range(2)]
    rows = data.splits["train_target"]
    for (dev, fresh), (capped, same_fresh) in zip(pairs[None], pairs[2]):
        assert torch.equal(fresh["source_index"], same_fresh["source_index"])  # the switch changes the dev batch only
        users = np.unique(dev["target_user_id"].numpy())
        available = np.bincount(rows.user, minlength=users.max() + 1)[users]
        assert (available > 2).any()
        per_user = np.bincount(capped["target_user_id"].numpy(), minlength=users.max() + 1)[users]
        assert (per_user == np.minimum(2, available)).all()
        assert set(capped["target_index"].tolist()) < set(dev["target_index"].tolist())
    # a new sample at every draw: the same users drawn again (a fresh stream) give other rows
    _, _, trainer, _, _ = biao(ml1m_loaded, upper_users=64, upper_dev_per_user=2)
    trainer.upper.stats["draws"] = 7
    again = trainer.upper.batch_pair()[0]
    assert torch.equal(again["target_user_id"].unique(), pairs[2][0][0]["target_user_id"].unique())
    assert not torch.equal(again["target_index"], pairs[2][0][0]["target_index"])


def test_random_dev_batches_reorder_the_same_target_training_set(ml1m_loaded):
    _, _, trainer, data, train = biao(ml1m_loaded, upper_batching="random")
    rows = len(data.splits["train_target"])
    stream = trainer.upper.dev_stream
    dev = np.concatenate([stream.next_batch()["target_index"].numpy() for _ in range((rows + 511) // 512)])[:rows]
    train_order = np.concatenate([b["target_index"].numpy() for b in train])
    assert sorted(dev.tolist()) == list(range(rows)) == sorted(train_order.tolist())
    assert (dev != train_order).mean() > 0.99
    _, _, trainer, _, _ = biao(ml1m_loaded, upper_batching="random", dev_order="file", dev_batch_size=256)
    first = trainer.upper.dev_stream.next_batch()["target_index"].numpy()
    assert first.tolist() == list(range(256))  # the reference code reads its dev set in file order


def test_auxiliary_head_takes_the_configured_adam_steps_on_dev_batches(ml1m_loaded):
    config, model, trainer, _, _ = biao(ml1m_loaded, aux_head=True, aux_head_steps=7, upper_batching="random")
    upper = trainer.upper
    calls, next_batch = [], upper.dev_stream.next_batch
    upper.dev_stream.next_batch = lambda *a: calls.append(1) or next_batch(*a)
    head, aux = snapshot(model.target_head.parameters()), snapshot(upper.aux_head.parameters())
    body = snapshot(model.non_head_parameters())
    assert upper.fit_aux_head() == 7 and len(calls) == 7
    assert model.target_head is not upper.aux_head and same(head, model.target_head.parameters())
    assert not same(aux, upper.aux_head.parameters()) and same(body, model.non_head_parameters())
    assert all(p.requires_grad for p in model.parameters())  # the body is unfrozen again


def test_split_strategy_keeps_dev_rows_out_of_the_lower_level(ml1m_loaded):
    _, _, trainer, data, train = biao(ml1m_loaded, dev_strategy="split", dev_split_ratio=0.1)
    assert train.target_split == "train_lower" and trainer.upper.dev_split == "dev"
    assert "dev" not in data.splits  # the shared data is not modified
    split_data = train.data
    whole = split_data.splits["train_target"]
    key = lambda rows: set(zip(rows.user.tolist(), rows.item.tolist(), rows.time.tolist()))
    dev, lower = key(split_data.splits["dev"]), key(split_data.splits["train_lower"])
    assert not dev & lower and len(split_data.splits["dev"]) == round(0.1 * len(whole))
    assert len(split_data.splits["dev"]) + len(split_data.splits["train_lower"]) == len(whole)
    dev_batch, _ = trainer.upper.batch_pair()
    assert set(dev_batch["target_user_id"].tolist()) <= set(split_data.splits["dev"].user.tolist())


def test_resumed_run_equals_uninterrupted_run(ml1m_loaded, tmp_path):
    def run(epochs, folder, resume=None):
        config, model, data = build_model(ml1m_loaded, "CoNet", tmp_path / folder, trainer="BIAO", interval=40,
                                          train_epochs=[f"BOTH:{epochs}"], stopping_step=10, upper_users=200,
                                          upper_dev_per_user=3)  # (the dev sample must resume too)
        trainer = BIAOTrainer(config, model)
        if resume:
            trainer.resume_checkpoint(resume)
        train, valid, _ = data_preparation(config, data)
        trainer.fit(train, valid, saved=True)
        return model, trainer

    full, full_trainer = run(2, "full")
    _, first = run(1, "part")
    resumed, resumed_trainer = run(2, "part", resume=first.resume_file)
    assert resumed_trainer.upper.stats == full_trainer.upper.stats and full_trainer.upper.stats["steps"] > 0
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert same(full_trainer.perceptron.parameters(), resumed_trainer.perceptron.parameters())
    checkpoint = torch.load(first.resume_file, weights_only=True)
    assert {"upper", "optimizer", "global_step", "rng", "train_data"} <= set(checkpoint)
    assert {"perceptron", "optimizer", "users", "stats"} <= set(checkpoint["upper"])


def test_a_biao_checkpoint_serves_the_plain_backbone(ml1m_loaded, tmp_path):
    config, model, trainer, _, train = biao(ml1m_loaded, tmp_path)
    checkpoint = torch.load(trainer.save_checkpoint(0), weights_only=True)
    plain_config, plain, _ = build_model(ml1m_loaded, "CoNet", tmp_path)
    plain.load_state_dict(checkpoint["state_dict"], strict=True)
    assert "perceptron" in checkpoint["upper"]


@pytest.mark.parametrize("model", ["CoNet", "MiNet", "DASL"])
def test_biao_by_file_and_by_flag_give_the_same_configuration(ml1m_path, model):
    import yaml

    from recbole_biao.config import PROPERTIES_DIR
    dataset_yaml = f"{PROPERTIES_DIR}/dataset/ml-1m-genres.yaml"
    biao_yaml = f"{PROPERTIES_DIR}/trainer/BIAO.yaml"
    _, by_file = build_config(model, None, [dataset_yaml, biao_yaml], {"data_path": ml1m_path[0]})
    assert by_file["trainer"] == "BIAO" and by_file["upper_batching"] == "matched"
    _, by_key = build_config(model, None, [dataset_yaml], {"data_path": ml1m_path[0], "trainer": "BIAO"})
    with open(biao_yaml, encoding="utf-8") as f:
        keys = set(yaml.safe_load(f)) | {"perceptron_history_length", "history_length", "upper_dev_per_user"}
    for key in keys:
        assert by_file[key] == by_key[key], key
    # the model's own values (MiNet and DASL: 20 and a dev cap of 4) win both ways
    assert by_key["perceptron_history_length"] == (50 if model == "CoNet" else 20)
    assert by_key["upper_dev_per_user"] == (None if model == "CoNet" else 4)


def test_biao_needs_the_base_variant_and_the_contract(ml1m_loaded):
    with pytest.raises(ConfigError, match="needs variant 'base', got 'S'"):
        biao(ml1m_loaded, model="CoNet-S")
    config = biao(ml1m_loaded)[0]
    with pytest.raises(ContractError, match="trainer BIAO needs a model with score"):
        BIAOTrainer(config, torch.nn.Linear(2, 2))
    # what the upper level calls besides the loss is part of the contract too: a model that lacks it fails here,
    # not in the middle of an epoch
    for broken in ("history", "TARGET_HEAD", "total_num_items"):
        _, model, _ = build_model(ml1m_loaded, "CoNet", None)
        object.__setattr__(model, broken, None)
        with pytest.raises(ContractError, match=f"needs a model with {broken}"):
            check_contract(model, "trainer BIAO")


def test_each_epoch_logs_the_diagnostics_and_warns_when_the_perceptron_did_not_move(ml1m_loaded, caplog):
    _, _, trainer, _, train = biao(ml1m_loaded, interval=10**9)
    with caplog.at_level(logging.INFO):
        report = trainer.upper.end_epoch(0)
    assert report["correlation"] == pytest.approx(1.0) and report["upper_steps"] == 0
    assert "score correlation with the untrained perceptron 1.000000" in caplog.text
    assert "has not measurably moved" in caplog.text
    caplog.clear()
    for _ in range(30):
        trainer.upper.step()
    with caplog.at_level(logging.INFO):
        report = trainer.upper.end_epoch(1)
    assert report["upper_steps"] == 30 and report["moved"] > 0
    assert ("has not measurably moved" in caplog.text) == (report["correlation"] >= 0.99)
    near_uniform = report["correlation"] < 0.99 and report["weight_spread"] < 0.05
    assert ("within a few per cent of uniform" in caplog.text) == near_uniform


def test_weight_log(ml1m_loaded, tmp_path):
    from recbole_biao.biao.weight_log import write_weight_log

    config, model, trainer, data, _ = biao(ml1m_loaded, tmp_path)
    trainer.upper.step()
    path = write_weight_log(trainer.upper, data, str(tmp_path / "w.csv"), 250, sample=1000, seed=1)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1000 and not list(tmp_path.glob(".w.csv*"))  # no temporary file left
    weights = np.array([float(r["weight"]) for r in rows])
    gamma = trainer.perceptron.gamma.item()
    for batch in weights.reshape(4, 250):  # softmax weights times the batch size average to gamma
        assert batch.mean() == pytest.approx(gamma, rel=1e-4)
    scores, initial = (np.array([float(r[c]) for r in rows]) for c in ("score", "initial_score"))
    assert not np.allclose(scores, initial)
    categories = set(data.tokens["source_category"][1:])
    assert {r["category"] for r in rows} <= categories
    assert all(r["user"].startswith("1m_") for r in rows)
    # user, item and timestamp name a source training row, each a different one
    train = data.splits["train_source"]
    known = set(zip(data.tokens["user"][train.user], data.tokens["source_item"][train.item], train.time.astype(float)))
    logged = {(r["user"], r["item"], float(r["timestamp"])) for r in rows}
    assert len(logged) == 1000 and logged <= known


def _defaults(trainer):
    perceptron = trainer.perceptron
    assert perceptron.global_mlp is not None and perceptron.use_user and perceptron.mode == "full"


def _no_global(trainer):
    assert trainer.perceptron.global_mlp is None and trainer.perceptron.use_user


def _no_user(trainer):
    assert trainer.perceptron.global_mlp is not None and not hasattr(trainer.perceptron, "attention")
    assert not trainer.perceptron.needs_histories


def _gamma_only(trainer):
    assert [name for name, _ in trainer.perceptron.named_parameters()] == ["gamma_raw"]
    weights = trainer.upper.probe_report()
    assert weights["weight_spread"] == pytest.approx(0.0, abs=1e-6) and weights["ess"] == pytest.approx(1.0)


def _dev_split(trainer):
    upper = trainer.upper
    assert upper.dev_split == "dev" and upper.target_split == "train_lower"
    lower, held_out = upper.data.splits["train_lower"], upper.data.splits["dev"]
    assert len(held_out) > 0 and len(lower) + len(held_out) == len(upper.data.splits["train_target"])
    assert trainer.train_data.target_split == "train_lower"  # the model never trains on the dev rows


def _paper_upper_level(trainer):
    assert isinstance(trainer.upper.optimizer, torch.optim.SGD) and hasattr(trainer.upper, "target_stream")
    assert trainer.config["hypergrad_method"] == "neumann"


@pytest.mark.parametrize("values,check", [
    ({}, _defaults),
    ({"use_global": False}, _no_global),
    ({"use_user": False}, _no_user),
    ({"perceptron_mode": "gamma_only"}, _gamma_only),
    ({"dev_strategy": "split", "dev_split_ratio": 0.05}, _dev_split),
    ({"upper_batching": "random", "hypergrad_method": "neumann", "upper_learner": "sgd"}, _paper_upper_level),
])
def test_each_switch_builds_what_it_names_and_trains(ml1m_path, tmp_path, values, check):
    kept = []
    result = run_recbole_biao("CoNet", trainer="BIAO", config_dict={
        **FAST, "data_path": ml1m_path[0], "checkpoint_dir": str(tmp_path), "interval": 20,
        "perceptron_history_length": 10, "upper_users": 200, **values},
        trainer_hook=lambda trainer, data: kept.append(trainer))
    check(kept[0])
    assert kept[0].upper.stats["steps"] > 0  # the upper level did step
    assert result["test_result"]["auc"] > 0.6, result


@pytest.mark.parametrize("correlation,spread,warning", [
    (1.0, 0.0, "has not measurably moved"),
    (0.84, 0.009, "within a few per cent of uniform"),  # what the paper's settings gave after 2 upper steps
    (0.84, 0.3, None),
])
def test_the_epoch_warnings_read_correlation_and_spread(ml1m_loaded, caplog, correlation, spread, warning):
    _, _, trainer, _, _ = biao(ml1m_loaded, interval=10**9)
    measured = trainer.upper.probe_report()
    trainer.upper.probe_report = lambda: {**measured, "correlation": correlation, "weight_spread": spread}
    with caplog.at_level(logging.INFO):
        trainer.upper.end_epoch(0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (warnings == []) if warning is None else (len(warnings) == 1 and warning in warnings[0])


def test_a_fixed_attention_learns_the_rest_with_the_same_hypergradient(ml1m_loaded):
    # SGD without clipping: one upper step moves each parameter by -lr x its hypergradient, so the two runs'
    # steps compare the hypergradients themselves; the fixed attention's pass (no autograd) computes the same
    # features as the learned one's, so the parameters both learn must receive the same gradient
    values = dict(upper_learner="sgd", upper_learning_rate=1.0, hypergrad_clip=None, upper_users=40)
    runs = {}
    for learn in (True, False):
        _, _, trainer, _, _ = biao(ml1m_loaded, learn_attention=learn, **values)
        named = dict(trainer.perceptron.named_parameters())
        before = {k: p.detach().clone() for k, p in named.items()}
        trainer.upper.step()
        runs[learn] = {k: named[k].detach() - before[k] for k in named}
        learned = {id(p) for p in trainer.upper.learned}
        assert all((id(p) in learned) == (learn or not k.startswith("attention.")) for k, p in named.items()
                   if k != "gamma_raw")  # (gamma: learn_gamma)
    fixed, full = runs[False], runs[True]
    assert all(not d.any() for k, d in fixed.items() if k.startswith("attention."))
    assert any(d.abs().sum() > 0 for k, d in full.items() if k.startswith("attention."))
    shared = [k for k in fixed if not k.startswith("attention.") and k != "gamma_raw"]
    assert shared and all(fixed[k].abs().sum() > 0 for k in shared)
    for k in shared:
        assert torch.allclose(fixed[k], full[k], rtol=1e-3, atol=1e-7), k
