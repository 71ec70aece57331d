"""End to end on generated data with planted harmful source behaviours: with the default BIAO properties the
perceptron must learn to down-weight them, and the control (upper learning rate 0) must not."""

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
