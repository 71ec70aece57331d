"""Target-domain CTR metrics of the paper: AUC, LogLoss, and RelaImpr."""

from logging import getLogger

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

__all__ = ["ctr_metrics", "rela_impr"]


def ctr_metrics(labels, probabilities, decimals=4):
    """RecBole-style result dict ``{'auc': .., 'logloss': ..}`` over all behaviours of a split.

    AUC is ``nan`` (with a warning) when the split holds a single class.
    """
    labels = np.asarray(labels, dtype=np.float64)
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-7, 1 - 1e-7)
    if len(np.unique(labels)) < 2:
        getLogger().warning("AUC is undefined: the evaluated behaviours hold a single label")
        auc = float("nan")
    else:
        auc = float(roc_auc_score(labels, probabilities))
    loss = float(log_loss(labels, probabilities, labels=[0, 1]))
    return {"auc": round(auc, decimals), "logloss": round(loss, decimals)}


def rela_impr(auc, base_auc):
    """RelaImpr of ``auc`` over ``base_auc`` in percent: ((AUC - 0.5) / (AUC_base - 0.5) - 1) * 100."""
    return ((auc - 0.5) / (base_auc - 0.5) - 1.0) * 100.0
