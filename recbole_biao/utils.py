"""Name registry: ``--model`` and ``--trainer`` resolve here first, then in RecBole-CDR."""

import importlib
import importlib.util
import os

import torch
from recbole.utils import init_seed as recbole_init_seed

from recbole_biao.errors import ConfigError

__all__ = ["VARIANTS", "get_model", "get_trainer", "model_names", "trainer_names", "dataset_names", "init_seed"]

# suffix of a model name -> the variant it selects (see recbole_biao/model/abstract.py)
VARIANTS = {"-S": "S", "-0": "0"}
MODELS = ("CoNet", "MiNet", "DASL")
TRAINERS = {"CrossDomain": "CDRTrainer", "BIAO": "BIAOTrainer"}


def _recbole_cdr_model(name):
    path = f"recbole_cdr.model.cross_domain_recommender.{name.lower()}"
    try:
        if importlib.util.find_spec(path) is None:
            return None
    except ModuleNotFoundError:  # the PyPI wheel ships no cross_domain_recommender package
        return None
    return getattr(importlib.import_module(path), name, None)


def model_names():
    return [m + suffix for m in MODELS for suffix in ("", *VARIANTS)]


def get_model(name):
    """Resolve a model name to ``(class, config overrides)``.

    ``CoNet`` is the base variant, ``CoNet-S`` and ``CoNet-0`` the same class with ``variant`` set.
    A name recbole-biao does not define is looked up in ``recbole_cdr`` (source installs ship models).
    """
    base, overrides = name, {}
    for suffix, variant in VARIANTS.items():
        if name.endswith(suffix) and name[: -len(suffix)] in MODELS:
            base, overrides = name[: -len(suffix)], {"variant": variant}
    if base in MODELS:
        module = importlib.import_module(f"recbole_biao.model.cross_domain_recommender.{base.lower()}")
        return getattr(module, base), overrides
    model_class = _recbole_cdr_model(name)
    if model_class is None:
        raise ConfigError(f"unknown model '{name}'; available: {', '.join(model_names())}")
    return model_class, overrides


def trainer_names():
    return list(TRAINERS)


def get_trainer(name):
    """Resolve ``--trainer`` (default ``CrossDomain``) to a trainer class, then try ``recbole_cdr.trainer``."""
    name = name or "CrossDomain"
    if name in TRAINERS:
        return getattr(importlib.import_module("recbole_biao.trainer"), TRAINERS[name])
    trainer = getattr(importlib.import_module("recbole_cdr.trainer"), f"{name}Trainer", None)
    if trainer is None:
        raise ConfigError(f"unknown trainer '{name}'; available: {', '.join(trainer_names())}")
    return trainer


def dataset_names(properties_dir):
    folder = os.path.join(properties_dir, "dataset")
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))


def init_seed(seed, reproducibility):
    """RecBole's seeding, plus deterministic torch kernels when ``reproducibility`` is set: parallel
    scatter-adds (embedding and gather backward) otherwise make re-runs differ in the last float bits."""
    recbole_init_seed(seed, reproducibility)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    torch.use_deterministic_algorithms(bool(reproducibility), warn_only=True)
