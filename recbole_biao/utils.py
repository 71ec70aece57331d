"""Name registry: ``--model`` and ``--trainer`` resolve here first, then in RecBole-CDR."""

import contextlib
import importlib
import importlib.util
import os
import tempfile

import torch
from recbole.utils import init_seed as recbole_init_seed

from recbole_biao.errors import ConfigError

__all__ = ["VARIANTS", "get_model", "get_trainer", "model_names", "trainer_names", "dataset_names", "init_seed",
           "atomic_path", "suggested_batch_size", "MIN_STEPS_PER_EPOCH"]

# suffix of a model name -> the variant it selects (see recbole_biao/model/abstract.py)
VARIANTS = {"-S": "S", "-0": "0"}
MODELS = ("CoNet", "MiNet", "DASL")
MIN_STEPS_PER_EPOCH = 100  # on 12k target rows, 24 steps of 512 per epoch left CoNet at valid AUC 0.51 after 2 epochs
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
    """The trainers and the profiles found in ``properties/trainer/`` (``BIAO-paper``, ...)."""
    from recbole_biao.config import PROPERTIES_DIR

    folder = os.path.join(PROPERTIES_DIR, "trainer")
    profiles = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml") and f.split("-")[0] in TRAINERS
                      and "-" in f)
    return list(TRAINERS) + profiles


def get_trainer(name):
    """Resolve ``--trainer`` (default ``CrossDomain``) to a trainer class, then try ``recbole_cdr.trainer``.

    A profile ``<trainer>-<profile>`` (e.g. ``BIAO-paper``, ``BIAO-reference``) is the trainer with the
    properties file ``properties/trainer/<trainer>-<profile>.yaml`` on top of its own.
    """
    name = name or "CrossDomain"
    base = name.split("-")[0]
    if base in TRAINERS and (name == base or name in trainer_names()):
        return getattr(importlib.import_module("recbole_biao.trainer"), TRAINERS[base])
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


def suggested_batch_size(train_rows, largest=512, smallest=64):
    """The largest power of two in [smallest, largest] that gives an epoch of ``train_rows`` target training
    rows at least :data:`MIN_STEPS_PER_EPOCH` steps: small data needs more, smaller steps to train at all."""
    size = largest
    while size > smallest and train_rows / size < MIN_STEPS_PER_EPOCH:
        size //= 2
    return size


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary name next to ``path``; on success it is renamed onto ``path`` (atomic on POSIX), on
    failure removed, so that an interrupted write never leaves a partial file under the final name."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the permissions open() would give, not mkstemp's owner-only 0600
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
