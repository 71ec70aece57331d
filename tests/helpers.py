"""Helpers shared by the tests: quiet one-epoch configurations and models on the ML-1M genre split."""

import os

from recbole_biao.quick_start import build_config

# the global lower level, pinned: the shipped datasets' tuned per_model sections (batch 64-128, 20 epochs) would
# make every test several times slower and change what a test about something else measures
UNTUNED_LOWER = {"train_batch_size": 512, "learning_rate": 0.001, "pairing": "stream", "pairing_ratio": 1,
                 "stopping_step": 3}
QUIET = {"show_progress": False, "state": "ERROR", "train_epochs": ["BOTH:1"], "checkpoint_dir": None}
FAST = {**QUIET, **UNTUNED_LOWER}


def config_for(data_path, model="CoNet", tmp=None, config_file=None, tuned=False, **values):
    """A config on the ML-1M genre split in ``data_path``, quiet, 1 epoch, checkpoints under ``tmp``
    (plus ``config_file`` if given); the lower level is the global default unless ``tuned`` or a file is given."""
    values = {**(QUIET if tuned or config_file else FAST), "data_path": data_path, **values}
    values["checkpoint_dir"] = str(tmp or os.path.join(data_path, "saved"))
    trainer = values.pop("trainer", None)
    return build_config(model, "ml-1m-genres", [config_file] if config_file else None, values, trainer)


def build_model(ml1m_loaded, model="CoNet", tmp=None, **values):
    """(config, seeded model, CDRData) on the loaded ML-1M genre split, as ``run_recbole_biao`` builds them."""
    from recbole_biao.utils import init_seed

    config0, dataset, data = ml1m_loaded
    model_class, config = config_for(config0["data_path"], model, tmp, **values)
    init_seed(config["seed"], config["reproducibility"])
    model = model_class(config, dataset)
    model.use_training_data(data)
    return config, model, data
