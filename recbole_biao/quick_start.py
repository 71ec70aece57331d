"""``run_recbole_biao``: config -> seed -> data -> model -> trainer -> fit -> evaluate, as RecBole's quick start."""

import logging
import os
import warnings
from logging import getLogger
from typing import Callable, List, Optional, Tuple

import torch
from recbole.utils import set_color

from recbole_biao import distributed
from recbole_biao.compat import init_run_logger
from recbole_biao.config import EMBEDDED, PROPERTIES_DIR, BiaoConfig, training_seed
from recbole_biao.data import data_preparation, load_data
from recbole_biao.errors import ConfigError
from recbole_biao.utils import (check_overlap, dataset_names, get_model, get_pipeline, get_trainer, init_seed,
                                model_variant)

__all__ = ["DEFAULT_DATASET", "build_config", "prepare_run", "run_recbole_biao", "predictions_file",
           "save_predictions"]

DEFAULT_DATASET = EMBEDDED


def build_config(model: str = "CoNet", dataset: Optional[str] = None, config_file_list: Optional[List[str]] = None,
                 config_dict: Optional[dict] = None, trainer: Optional[str] = None) -> Tuple[type, BiaoConfig]:
    """The :class:`BiaoConfig` of a run: the dataset yaml first, then the user's files, then ``config_dict``.

    Without ``dataset`` and without config files the embedded default ``ml-1m-genres`` is used; with config
    files, they are expected to name the two domains themselves.
    """
    model_class, overrides = get_model(model), model_variant(model)
    config_dict = {**overrides, **(config_dict or {})}
    if trainer is not None:
        config_dict["trainer"] = trainer
    return model_class, BiaoConfig(model_class, run_config_files(dataset, config_file_list), config_dict)


def run_config_files(dataset=None, config_file_list=None) -> list:
    """The user's properties files of a run as :class:`BiaoConfig` reads them: the dataset yaml first (the
    embedded default without ``dataset`` and files), then ``config_file_list``."""
    if dataset is None and not config_file_list:
        dataset = DEFAULT_DATASET
    files = []
    if dataset is not None:
        if not dataset or os.path.basename(dataset) != dataset or dataset.startswith("."):
            raise ConfigError(f"--dataset '{dataset}': expected the name of a properties/dataset/<name>.yaml, not a "
                              f"path (a file of your own goes to --config_files)")
        path = os.path.join(PROPERTIES_DIR, "dataset", f"{dataset}.yaml")
        if not os.path.isfile(path):
            raise ConfigError(f"unknown dataset '{dataset}': no {path}; "
                              f"available: {', '.join(dataset_names(PROPERTIES_DIR))}")
        files.append(path)
    return files + list(config_file_list or [])


def prepare_run(model_class: type, config: BiaoConfig) -> tuple:
    """Everything :func:`run_recbole_biao` builds before training, from a :func:`build_config` result:
    ``(data, (train, valid, test), trainer)``. The dataset yaml's converter runs once if it names one; the
    model is built after re-seeding, so that its initialisation does not depend on the data's draws."""
    logger = getLogger()
    if config["dataset_converter"]:
        from dataset_converters import get_converter

        get_converter(config["dataset_converter"]).prepare(config, logger)
    dataset, data = load_data(config)
    logger.info(dataset)
    check_overlap(model_class, config, data.stats["overlap"])
    loaders = data_preparation(config, data)
    init_seed(training_seed(config), config["reproducibility"])
    model = model_class(config, dataset).to(config["device"])
    model.use_training_data(data)
    logger.info(model)
    trainer = get_trainer(config["trainer"])(config, model)
    if distributed.world_size() > 1:  # the same model everywhere; from here each rank draws its own numbers
        torch.manual_seed(distributed.rank_seed(training_seed(config)))
    return data, loaders, trainer


def predictions_file(model_file: str) -> str:
    """Where a run whose best-valid checkpoint is ``model_file`` wrote its predictions (:func:`save_predictions`)."""
    return model_file[: -len(".pth")] + "-predictions.npz"


def save_predictions(trainer, loaders: dict) -> str:
    """The evaluated (best-valid) model's click probabilities, labels and users on each split of ``loaders``,
    as ``<split>_scores`` / ``<split>_labels`` / ``<split>_users`` arrays in one ``.npz`` (atomic)."""
    import numpy as np

    from recbole_biao.files import atomic_path

    arrays = {}
    for split, loader in loaders.items():
        for name, values in zip(("scores", "labels", "users"), trainer.predictions(loader)):
            arrays[f"{split}_{name}"] = values
    path = predictions_file(trainer.saved_model_file)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def run_recbole_biao(model: str = "CoNet", dataset: Optional[str] = None, config_file_list: Optional[List[str]] = None,
                     config_dict: Optional[dict] = None, trainer: Optional[str] = None, saved: bool = True,
                     resume: Optional[str] = None, trainer_hook: Optional[Callable] = None) -> dict:
    """Train and evaluate one model; returns RecBole's result dict (best valid and test results), plus
    ``training``: the best-valid and last epochs, ``still_improving`` (the best valid score came at the last
    epoch of ``train_epochs``) and ``collapsed`` (the evaluated model predicts one constant).

    Args:
        model (str): a registered model name, e.g. ``CoNet``, ``CoNet-S``, ``CoNet-0``.
        dataset (str): a dataset yaml in ``properties/dataset/`` (default: the embedded ``ml-1m-genres``).
        config_file_list (list of str): more properties files.
        config_dict (dict): values overriding every file.
        trainer (str): ``CrossDomain`` (default) or ``BIAO``; the ``trainer`` key of the files otherwise.
        saved (bool): write checkpoints and test the best-valid one.
        resume (str): a ``*-last.pth`` checkpoint to continue.
        trainer_hook (callable): called with the trainer and the protocol's data before training (e.g. to
            attach an observer to BIAO's upper level, or to keep the trainer for an analysis).
    """
    # configurations initialization
    model_class, config = build_config(model, dataset, config_file_list, config_dict, trainer)
    if config["selection"]:  # learn, then select: a pipeline of runs (trainer BIAO-select)
        return get_pipeline("selection")(model, dataset, config_file_list,
                                         {**(config_dict or {}), "trainer": config["trainer"]})
    if distributed.launched():  # one of several processes started by torchrun
        device = distributed.init(config["use_gpu"])
        if device is not None:
            config["device"] = device
    init_seed(config["seed"], config["reproducibility"])
    if distributed.is_main():
        init_run_logger(config)
    else:  # rank 0 logs, shows progress and writes files
        config["show_progress"] = False
        getLogger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning, module="recbole")  # pandas notes inside recbole 1.0.1
    logger = getLogger()
    logger.info(config)
    if distributed.launched():
        logger.info(f"torchrun: {distributed.world_size()} processes joined, backend {distributed.backend()}; "
                    f"rank 0 logs, evaluates and writes the files")

    data, (train_data, valid_data, test_data), trainer = prepare_run(model_class, config)
    if resume:
        trainer.resume_checkpoint(resume)
    if trainer_hook is not None:
        trainer_hook(trainer, data)

    # training and evaluation
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"])
    test_result = None  # (rank 0 evaluates)
    if distributed.is_main():
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
        if saved:  # beside the checkpoint: what learn-then-select compares its candidates by, and a user may read
            save_predictions(trainer, {"valid": valid_data, "test": test_data})
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    return {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "model_file": trainer.saved_model_file if saved else None,
        "device": str(config["device"]),
        "training": {"best_epoch": trainer.best_epoch, "last_epoch": trainer.last_epoch,
                     "still_improving": trainer.still_improving, "collapsed": trainer.collapsed},
    }
