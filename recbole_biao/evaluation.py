"""Target-domain metrics: the paper's CTR metrics (AUC, LogLoss, RelaImpr) and RecBole's ranking metrics
(Recall, NDCG, MRR, Hit at K) for the ranking protocol (``eval_args: {mode: full}`` or ``uniN``)."""

from logging import getLogger
from typing import Dict, List, Optional

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from recbole_biao.errors import ConfigError

__all__ = ["ctr_metrics", "rela_impr", "RANKING_METRICS", "CTR_METRICS", "ranking_mode", "require_ctr", "metric_names",
           "ranking_metrics"]

CTR_METRICS = ("auc", "logloss")
RANKING_METRICS = ("recall", "ndcg", "mrr", "hit")


def ctr_metrics(labels: np.ndarray, probabilities: np.ndarray, decimals: int = 4) -> Dict[str, float]:
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


def rela_impr(auc: float, base_auc: float) -> float:
    """RelaImpr of ``auc`` over ``base_auc`` in percent: ((AUC - 0.5) / (AUC_base - 0.5) - 1) * 100."""
    return ((auc - 0.5) / (base_auc - 0.5) - 1.0) * 100.0


def ranking_mode(eval_args: Optional[dict]) -> Optional[int]:
    """``None`` for the CTR protocol (``mode: labeled``), ``0`` for a full sort over the target items (``full``),
    ``N`` for ``uniN`` (the held-out item among N items drawn uniformly from those the user has not had)."""
    mode = str((eval_args or {}).get("mode", "labeled"))
    if mode == "labeled":
        return None
    if mode == "full":
        return 0
    if mode.startswith("uni") and mode[3:].isdigit() and int(mode[3:]) > 0:
        return int(mode[3:])
    raise ConfigError(f"properties key eval_args.mode: expected labeled (CTR: AUC, LogLoss), full or uniN (ranking), "
                      f"got {mode!r}")


def metric_names(config) -> List[str]:
    """The result keys an evaluation under ``config`` gives: ``auc``, ``logloss`` (CTR) or ``ndcg@10``, ...
    (ranking: each metric at each of ``topk``)."""
    metrics = [str(m).lower() for m in config["metrics"] or []]
    if ranking_mode(config["eval_args"]) is None:
        return metrics
    topk = config["topk"] if isinstance(config["topk"], list) else [config["topk"]]
    return [f"{m}@{k}" for m in metrics for k in topk]


def require_ctr(config, what: str) -> None:
    """Raise :class:`ConfigError` when ``config`` evaluates by the ranking protocol: ``what`` (a comparison, a
    search, a selection) decides by AUC."""
    if ranking_mode(config["eval_args"]) is not None:
        raise ConfigError(f"{what} decides by target AUC (the CTR protocol); eval_args.mode "
                          f"{config['eval_args']['mode']!r} asks for ranking metrics: run single models for those")


def ranking_metrics(ranks: np.ndarray, metrics: List[str], topk: List[int], users: Optional[np.ndarray] = None,
                    decimals: int = 4) -> Dict[str, float]:
    """RecBole-style ``{'recall@10': .., 'ndcg@10': ..}`` from the 1-based rank of each held-out item among its
    candidates (the user's other held-out items among them, as in RecBole's full sort), averaged over users
    (``users``: the user of each rank; default one user per rank, as leave-one-out gives). For a user with
    held-out items ranked ``r_1 .. r_P``: Recall@K = hits / P, Hit@K = any hit, MRR@K = 1 / the best rank
    within K, NDCG@K = sum of ``1 / log2(r + 1)`` within K over the ideal ``sum_{i<=min(P,K)} 1 / log2(i + 1)``."""
    ranks = np.asarray(ranks, dtype=np.float64)
    users = np.arange(len(ranks)) if users is None else np.asarray(users)
    _, group, size = np.unique(users, return_inverse=True, return_counts=True)
    out = {}
    for k in topk:
        within = ranks <= k
        hits = np.bincount(group, within, minlength=len(size))
        gain = np.bincount(group, within / np.log2(ranks + 1), minlength=len(size))
        ideal = np.cumsum(1 / np.log2(np.arange(2, k + 2)))[np.minimum(size, k) - 1]
        best = np.full(len(size), np.inf)
        np.minimum.at(best, group, ranks)
        per_user = {"recall": hits / size, "hit": (hits > 0).astype(np.float64), "ndcg": gain / ideal,
                    "mrr": np.where(best <= k, 1 / best, 0.0)}
        for metric in metrics:
            out[f"{metric}@{k}"] = round(float(per_user[metric].mean()) if len(ranks) else float("nan"), decimals)
    return {f"{m}@{k}": out[f"{m}@{k}"] for m in metrics for k in topk}
