"""Shared fixtures: the real ML-1M genre split, converted once per test session."""

import pytest

from dataset_converters import ml1m_genres
from tests.helpers import config_for


@pytest.fixture(scope="session")
def ml1m_path(tmp_path_factory):
    """data_path holding ml-1m-genres-source/ and ml-1m-genres-target/ converted from the shipped ML-1M."""
    path = str(tmp_path_factory.mktemp("data"))
    report = ml1m_genres.convert(path)
    return path, report


@pytest.fixture(scope="session")
def ml1m_loaded(ml1m_path):
    """(config, dataset, CDRData) of the real ML-1M genre split."""
    from recbole_biao.data import BiaoDataset, build_cdr_data

    _, config = config_for(ml1m_path[0])
    dataset = BiaoDataset(config)
    return config, dataset, build_cdr_data(dataset)
