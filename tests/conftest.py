"""Shared fixtures: the real ML-1M genre split, converted once per test session."""

import os

import pytest

from dataset_converters import ml1m_genres
from recbole_biao.quick_start import build_config

FAST = {"show_progress": False, "state": "ERROR", "train_epochs": ["BOTH:1"], "checkpoint_dir": None}


@pytest.fixture(scope="session")
def ml1m_path(tmp_path_factory):
    """data_path holding ml-1m-genres-source/ and ml-1m-genres-target/ converted from the shipped ML-1M."""
    path = str(tmp_path_factory.mktemp("data"))
    report = ml1m_genres.convert(path)
    return path, report


def config_for(data_path, model="CoNet", tmp=None, **values):
    """A config on the ML-1M genre split in ``data_path``, quiet, 1 epoch, checkpoints under ``tmp``."""
    values = {**FAST, "data_path": data_path, **values}
    values["checkpoint_dir"] = str(tmp or os.path.join(data_path, "saved"))
    trainer = values.pop("trainer", None)
    return build_config(model, "ml-1m-genres", None, values, trainer)


@pytest.fixture(scope="session")
def ml1m_loaded(ml1m_path):
    """(config, dataset, CDRData) of the real ML-1M genre split."""
    from recbole_biao.data import BiaoDataset, build_cdr_data

    _, config = config_for(ml1m_path[0])
    dataset = BiaoDataset(config)
    return config, dataset, build_cdr_data(dataset)


def build_model(ml1m_loaded, model="CoNet", tmp=None, **values):
    """(config, seeded model, CDRData) on the loaded ML-1M genre split, as ``run_recbole_biao`` builds them."""
    from recbole_biao.utils import init_seed

    config0, dataset, data = ml1m_loaded
    model_class, config = config_for(config0["data_path"], model, tmp, **values)
    init_seed(config["seed"], config["reproducibility"])
    return config, model_class(config, dataset), data
