"""Errors that recbole-biao reports to users as one line, without a stack trace."""

__all__ = ["BiaoError", "ConfigError", "DataError", "ContractError"]


class BiaoError(Exception):
    """Base class: the CLI prints ``error: <message>`` and exits with status 2."""


class ConfigError(BiaoError):
    """A properties key, model, trainer or dataset name is wrong."""


class DataError(BiaoError):
    """An input file is missing or malformed, or the data cannot support the protocol."""


class ContractError(BiaoError):
    """A model lacks a method or attribute that a trainer needs."""
