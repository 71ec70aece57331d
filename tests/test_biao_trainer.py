"""The BIAO trainer on the real ML-1M genre split: isolation of the two levels, dev batches, resume,
properties-only switch, weight log, and short runs of the variants of paper Tables 2-3."""

import csv

import numpy as np
import pytest
import torch

from recbole_biao.data import data_preparation
from recbole_biao.errors import ConfigError, ContractError
from recbole_biao.quick_start import build_config, run_recbole_biao
from recbole_biao.trainer import BIAOTrainer
from tests.conftest import FAST, build_model


def biao(ml1m_loaded, tmp=None, model="CoNet", **values):
    config, model, data = build_model(ml1m_loaded, model, tmp, trainer="BIAO", **values)
    return config, model, BIAOTrainer(config, model), data


def snapshot(params):
    return [p.detach().clone() for p in params]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_levels_are_isolated(ml1m_loaded):
    config, model, trainer, data = biao(ml1m_loaded, interval=10**9)
    perceptron = list(trainer.perceptron.parameters())
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in perceptron}
    assert optimised == {id(p) for p in model.model_parameters()}

    train, _, _ = data_preparation(config, data)
    phi, theta = snapshot(perceptron), snapshot(model.model_parameters())
    trainer._make_streams(train)
    trainer._train_epoch(train, 0)  # lower steps only (interval never reached)
    assert same(phi, perceptron) and not same(theta, model.model_parameters())

    theta = snapshot(model.model_parameters())
    trainer._upper_step()
    assert same(theta, model.model_parameters()) and not same(phi, perceptron)
    assert trainer.upper_stats["steps"] == 1


def test_auxiliary_head_trains_on_dev_batches_only(ml1m_loaded):
    config, model, trainer, data = biao(ml1m_loaded, aux_head=True, aux_head_steps=3)
    train, _, _ = data_preparation(config, data)
    trainer._make_streams(train)
    head, aux = snapshot(model.target_head.parameters()), snapshot(trainer.aux_head.parameters())
    phi = snapshot(trainer.perceptron.parameters())
    trainer._upper_step()
    assert model.target_head is not trainer.aux_head and same(head, model.target_head.parameters())
    assert not same(aux, trainer.aux_head.parameters()) and not same(phi, trainer.perceptron.parameters())
    assert trainer.streams["dev"]._pos == 4 * 512  # three head steps and the dev loss


def test_dev_batches_reorder_the_same_target_training_set(ml1m_loaded):
    config, _, trainer, data = biao(ml1m_loaded)
    train, _, _ = data_preparation(config, data)
    trainer._make_streams(train)
    rows = len(data.splits["train_target"])
    dev = np.concatenate([trainer.streams["dev"].next_batch()["target_index"].numpy()
                          for _ in range((rows + 511) // 512)])[:rows]
    train_order = np.concatenate([b["target_index"].numpy() for b in train])
    assert sorted(dev.tolist()) == list(range(rows)) == sorted(train_order.tolist())
    assert (dev != train_order).mean() > 0.99


def test_split_strategy_keeps_dev_rows_out_of_the_lower_level(ml1m_loaded):
    config, _, trainer, data = biao(ml1m_loaded, dev_strategy="split", dev_split_ratio=0.1)
    train, _, _ = data_preparation(config, data)
    trainer._make_streams(train)
    assert train.target_split == "train_lower" and trainer.streams["dev"].split == "dev"
    assert "dev" not in data.splits  # the shared data is not modified
    split_data = train.data
    whole = split_data.splits["train_target"]
    key = lambda rows: set(zip(rows.user.tolist(), rows.item.tolist(), rows.time.tolist()))
    dev, lower = key(split_data.splits["dev"]), key(split_data.splits["train_lower"])
    assert not dev & lower and len(split_data.splits["dev"]) == round(0.1 * len(whole))
    assert len(split_data.splits["dev"]) + len(split_data.splits["train_lower"]) == len(whole)


def test_resumed_run_equals_uninterrupted_run(ml1m_loaded, tmp_path):
    def run(epochs, folder, resume=None):
        config, model, trainer, data = biao(ml1m_loaded, tmp_path / folder, interval=40,
                                            train_epochs=[f"BOTH:{epochs}"], stopping_step=10)
        if resume:
            trainer.resume_checkpoint(resume)
        train, valid, _ = data_preparation(config, data)
        trainer.fit(train, valid, saved=True)
        return model, trainer

    full, full_trainer = run(2, "full")
    _, first = run(1, "part")
    resumed, resumed_trainer = run(2, "part", resume=first.resume_file)
    assert resumed_trainer.upper_stats["steps"] == full_trainer.upper_stats["steps"] > 0
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name  # model and perceptron
    for a, b in zip(full_trainer.upper_optimizer.state_dict()["param_groups"],
                    resumed_trainer.upper_optimizer.state_dict()["param_groups"]):
        assert a == b
    checkpoint = torch.load(first.resume_file, weights_only=True)
    assert {"upper_optimizer", "optimizer", "global_step", "rng", "streams", "train_data"} <= set(checkpoint)


def test_properties_alone_switch_biao_on(ml1m_path):
    from recbole_biao.config import PROPERTIES_DIR
    dataset_yaml = f"{PROPERTIES_DIR}/dataset/ml-1m-genres.yaml"
    _, config = build_config("CoNet", None, [dataset_yaml, f"{PROPERTIES_DIR}/trainer/BIAO.yaml"],
                             {"data_path": ml1m_path[0]})
    assert config["trainer"] == "BIAO" and config["interval"] == 100 and config["neumann_iterations"] == 3
    _, config = build_config("CoNet", None, [dataset_yaml], {"data_path": ml1m_path[0], "trainer": "BIAO"})
    assert config["perceptron_history_length"] == 50 and config["upper_learning_rate"] == 0.01


def test_biao_needs_the_base_variant_and_the_contract(ml1m_loaded):
    with pytest.raises(ConfigError, match="needs variant 'base', got 'S'"):
        biao(ml1m_loaded, model="CoNet-S")
    config = biao(ml1m_loaded)[0]
    with pytest.raises(ContractError, match="trainer BIAO needs a model with score"):
        BIAOTrainer(config, torch.nn.Linear(2, 2))


@pytest.mark.parametrize("values", [
    {},
    {"use_global": False},
    {"use_user": False},
    {"dev_strategy": "split", "dev_split_ratio": 0.05},
])
def test_short_biao_runs_beat_chance(ml1m_path, tmp_path, values):
    result = run_recbole_biao("CoNet", trainer="BIAO", config_dict={
        **FAST, "data_path": ml1m_path[0], "checkpoint_dir": str(tmp_path), "interval": 20,
        "perceptron_history_length": 10, **values})
    assert result["test_result"]["auc"] > 0.6, result


def test_weight_log(ml1m_loaded, tmp_path):
    config, model, trainer, data = biao(ml1m_loaded, tmp_path, weight_log=str(tmp_path / "w.csv"),
                                        weight_log_sample=1000)
    path = trainer.write_weight_log(data)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1000
    assert set(rows[0]) == {"user", "item", "category", "source_history_length", "target_history_length",
                            "user_source_behaviours", "user_target_behaviours", "score", "weight",
                            "recent_source_items", "recent_target_items"}
    weights = np.array([float(r["weight"]) for r in rows])
    assert (weights > 0).all() and 0.2 < weights.mean() < 5
    categories = set(data.tokens["source_category"][1:])
    assert {r["category"] for r in rows} <= categories
    assert all(r["user"].startswith("1m_") for r in rows)
