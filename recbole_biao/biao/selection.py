"""Learn, then select: BIAO's perceptron chooses which source behaviours a model trains on (a mode beyond the
paper; trainer profile ``BIAO-select``, ``properties/trainer/BIAO-select.yaml``).

Soft down-weighting of harmful source behaviours buys little AUC, even with perfect weights; dropping them and
retraining buys a lot where they do harm. So:

1. **learn**: a BIAO run of ``select_epochs`` epochs (the profile's upper level: a wide ``score_bound``);
2. **score**: each source training interaction's *stable weight*: its normalised weight times the batch size,
   averaged over ``select_batchings`` random batchings of all source training rows (a weight depends on the
   batch it is normalised in; one batching ranks noisily). Written as ``<stem>-scores.csv`` with the rows'
   original user, item and timestamp;
3. **retrain** the model from scratch (plain Base, the dataset's lower level) once per candidate: keep all
   (Base), drop the interactions whose stable weight is below each of ``select_cutoffs`` (a keep file, see
   ``keep_file``; ``gap``: the cutoff that splits the log weights into two groups of least spread within
   them, see ``gap_cutoff``), drop all (the source loss off: the -0 variant, Base-0); with no cutoffs
   (``select_cutoffs: []``) there is nothing to score and no stage 1: the guard alone;
4. **choose on the valid set**: a candidate replaces "keep all" only if a paired bootstrap over the valid
   users (``select_bootstrap`` resamples) gives it a higher valid AUC with one-sided p < ``select_level``;
   among several such candidates the highest valid AUC wins. Otherwise the answer is "keep all".

Only interactions are candidates: sampled negatives (implicit data) are drawn for the kept positives. Every
stage is cached: stage 1 by its scores file, the retrains in the run cache of ``--compare``, so that an
interrupted pipeline resumes where it stopped; the retrains run in parallel on a Ray pool when one is given.
``select_random`` (a control for benchmarks): instead of the chosen candidate, train Base with the same number
of source interactions dropped at random.
"""

from __future__ import annotations

import os
from logging import getLogger
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from recbole_biao.errors import ConfigError
from recbole_biao.evaluation import require_ctr

__all__ = ["stable_weights", "interaction_rows", "random_keep", "write_mask", "gap_cutoff", "paired_bootstrap",
           "choose", "write_keep_file", "valid_predictions", "run_selection"]

KEEP_ALL, DROP_ALL = "keep all", "drop all"
# stage 1's settings pin the stage-2-only keys: its cache key hashes the resolved configuration, so a key merely
# left out would still carry the properties files' value, and a changed guard would relearn the same scores
STAGE2_ONLY = {"select_random": False, "select_histories": False, "select_level": 0.5, "select_bootstrap": 1,
               "select_cutoffs": ["gap"]}


def interaction_rows(data) -> np.ndarray:
    """Indices of the source training rows that are interactions (sampled negatives, stored after them, are not)."""
    rows = len(data.splits["train_source"])
    return np.arange(rows - int(data.stats.get("source_sampled_negatives", 0)))


def stable_weights(upper, data, batch_size: int, batchings: int, seed: int) -> np.ndarray:
    """``[rows]``: each source training row's normalised weight x ``batch_size``, averaged over ``batchings``
    random batchings of all source training rows (as training batches them). The scores do not depend on the
    batch, so they are computed once; only the normalisation is redone per batching."""
    from recbole_biao.biao.weight_log import batch_weights, scores_of_rows

    n = len(data.splits["train_source"])
    scores = scores_of_rows(upper, data, np.arange(n))
    total = np.zeros(n)
    rng = np.random.default_rng(seed)
    for _ in range(batchings):
        order = rng.permutation(n)
        total[order] += batch_weights(upper.perceptron, scores[torch.from_numpy(order).to(scores.device)],
                                      batch_size)
    return total / batchings


def random_keep(n_rows: int, n_drop: int, seed: int, draw: int = 0) -> np.ndarray:
    """A keep mask over ``n_rows`` scored interactions with ``n_drop`` dropped at random: ``select_random``'s
    control is draw 0; benchmarks draw more (``recbole_biao.experiments.controls``)."""
    rng = np.random.default_rng(seed + 7 + 1000 * draw)
    keep = np.ones(n_rows, dtype=bool)
    keep[rng.permutation(n_rows)[:n_drop]] = False
    return keep


def write_mask(scored, keep: np.ndarray, path: str) -> str:
    """Write ``scored`` (a scores file's table) with ``keep`` as its keep column to ``path`` (atomic); an
    existing file is reused: the runs trained on it are cached under its content."""
    from recbole_biao.files import atomic_path

    if not os.path.isfile(path):
        with atomic_path(path) as tmp:
            scored.assign(keep=keep.astype(int)).to_csv(tmp, index=False)
    return path


def gap_cutoff(weights: np.ndarray) -> float:
    """The weight that splits ``weights`` into a low and a high group with the largest between-group variance
    of their logarithms (Otsu's threshold, exact over every split of the sorted values): a fixed cutoff misses
    the harmful rows whenever the perceptron separates them at another level (measured on planted harm: median
    planted weight 0.05 to 0.81 over five seeds). The cutoff is the geometric mean of the two values it falls
    between; every weight below it is dropped."""
    logs = np.sort(np.log(np.asarray(weights, dtype=np.float64)))
    n = len(logs)
    if n < 2 or logs[0] == logs[-1]:
        return float(np.exp(logs[0])) if n else 1.0  # nothing to split: drops nothing
    below = np.arange(1, n)  # the split after each of the first n - 1 sorted values
    sums = np.cumsum(logs)[:-1]
    mean_low, mean_high = sums / below, (logs.sum() - sums) / (n - below)
    between = below * (n - below) * (mean_low - mean_high) ** 2
    between[logs[1:] == logs[:-1]] = -1  # no split between equal values
    at = int(np.argmax(between))
    return float(np.exp((logs[at] + logs[at + 1]) / 2))


def write_keep_file(path: str, data, weights: np.ndarray, keep: np.ndarray) -> str:
    """A keep file (``keep_file``) of the source training interactions: original user, item, timestamp,
    their stable weight and ``keep`` (1 or 0); atomic."""
    import csv

    from recbole_biao.files import atomic_path

    index = interaction_rows(data)
    rows = data.splits["train_source"]
    users, items = data.tokens["user"][rows.user[index]], data.tokens["source_item"][rows.item[index]]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["user", "item", "timestamp", "weight", "keep"])
        for u, i, t, w, k in zip(users, items, rows.time[index], weights[index], keep):
            writer.writerow([u, i, repr(float(t)), f"{w:.6g}", int(k)])
    return path


class _WeightedAUC:
    """AUC of fixed scores and labels under per-row weights, O(rows) per call: the rows are ranked once (ties
    share a rank), then each call sums, per positive weight, the negative weight ranked below it (half of it
    at the same score), as sklearn's ``roc_auc_score(..., sample_weight=...)`` does by the trapezoid rule."""

    def __init__(self, scores: np.ndarray, labels: np.ndarray):
        values, self.rank = np.unique(scores, return_inverse=True)
        self.size, self.positive = len(values), labels > 0

    def __call__(self, weight: np.ndarray) -> float:
        pos = np.bincount(self.rank, weights=weight * self.positive, minlength=self.size)
        neg = np.bincount(self.rank, weights=weight * ~self.positive, minlength=self.size)
        below = np.cumsum(neg) - neg
        return float((pos * (below + neg / 2)).sum() / (pos.sum() * neg.sum()))


def paired_bootstrap(candidate: np.ndarray, reference: np.ndarray, labels: np.ndarray, users: np.ndarray,
                     rounds: int = 1000, seed: int = 0) -> float:
    """One-sided p of "``candidate`` has a higher AUC than ``reference``" on the same rows: the share of
    ``rounds`` bootstrap resamples of the users (each user's rows together, drawn with replacement) in which
    the candidate's AUC is not above the reference's."""
    _, owner = np.unique(users, return_inverse=True)
    auc_a, auc_b = _WeightedAUC(candidate, labels), _WeightedAUC(reference, labels)
    positive = labels > 0
    rng = np.random.default_rng(seed)
    worse = 0
    for _ in range(rounds):
        weight = np.bincount(rng.integers(owner.max() + 1, size=owner.max() + 1), minlength=owner.max() + 1)[owner]
        drawn = weight > 0
        if not (positive & drawn).any() or not (~positive & drawn).any():
            continue
        worse += auc_a(weight) <= auc_b(weight)
    return (worse + 1) / (rounds + 1)


def choose(predictions: Dict[str, dict], level: float, rounds: int, seed: int) -> Tuple[str, Dict[str, float]]:
    """The chosen candidate and each candidate's bootstrap p against "keep all": ``predictions`` maps a candidate
    to its valid ``scores``, ``labels`` and ``users`` (the same rows for all)."""
    reference = predictions[KEEP_ALL]
    p_values, aucs = {}, {}
    for name, pred in predictions.items():
        aucs[name] = roc_auc_score(pred["labels"], pred["scores"])
        if name != KEEP_ALL:
            p_values[name] = paired_bootstrap(pred["scores"], reference["scores"], reference["labels"],
                                              reference["users"], rounds, seed)
    better = [n for n, p in p_values.items() if p < level and aucs[n] > aucs[KEEP_ALL]]
    return (max(better, key=aucs.get) if better else KEEP_ALL), p_values


def valid_predictions(model_file: Optional[str]) -> Optional[dict]:
    """``{scores, labels, users}`` of a finished run's valid rows (saved beside its checkpoint), or ``None`` when
    the run saved none."""
    from recbole_biao.quick_start import predictions_file

    if not model_file or not os.path.isfile(predictions_file(model_file)):
        return None
    with np.load(predictions_file(model_file)) as f:
        return {k: f[f"valid_{k}"] for k in ("scores", "labels", "users")}


def run_selection(model: str, dataset=None, config_file_list=None, config_dict=None, pool=None) -> dict:
    """The learn-then-select pipeline for ``model`` (a Base model name); returns ``run_recbole_biao``'s dict of the
    chosen candidate (or of the random-drop control), plus ``selection``: the candidates' valid and test AUCs,
    rows dropped and bootstrap p, and the chosen one."""
    from recbole_biao.experiments import parallel
    from recbole_biao.experiments.commands import OUT_DIR
    from recbole_biao.experiments.compare import Row, RunCache, run_rows, settings_fingerprint
    from recbole_biao.quick_start import build_config, run_recbole_biao
    from recbole_biao.utils import model_variant

    logger = getLogger()
    if model_variant(model):
        raise ConfigError(f"trainer BIAO-select selects source behaviours for the Base model; got '{model}' "
                          f"(use the name without -S / -0)")
    values = {**(config_dict or {}), "trainer": "BIAO-select"}
    _, config = build_config(model, dataset, config_file_list, values)
    require_ctr(config, "learn-then-select")
    seed, stem = config["seed"], None
    # stage 1, cached by its scores file (named after everything that determines it)
    stage1 = {**values, **STAGE2_ONLY, "selection": False, "train_epochs": [f"BOTH:{config['select_epochs']}"]}
    stage1.pop("trainer")
    key = settings_fingerprint(model, "BIAO-select", dataset, config_file_list, stage1)
    folder = os.path.join(config["checkpoint_dir"], "selection")
    stem = os.path.join(folder, f"{model}-seed{seed}-{key}")
    scores_file = stem + "-scores.csv"
    kept = {}

    def hook(trainer, data) -> None:
        kept["trainer"], kept["data"] = trainer, data

    if not config["select_cutoffs"]:  # the guard alone: nothing to score, so no stage 1
        from recbole_biao.data import load_data

        logger.info("learn-then-select: no cutoffs (select_cutoffs: []): no stage 1; the guard chooses between "
                    "keep all and drop all")
        scores_file, scored = None, None
        n_rows = len(interaction_rows(load_data(config)[1]))
    elif not os.path.isfile(scores_file):
        logger.info(f"learn-then-select, stage 1: BIAO for {config['select_epochs']} epochs")
        run_recbole_biao(model, dataset, config_file_list, stage1, "BIAO-select", trainer_hook=hook)
        trainer, data = kept["trainer"], kept["data"]
        weights = stable_weights(trainer.upper, data, config["train_batch_size"], config["select_batchings"], seed)
        os.makedirs(folder, exist_ok=True)
        write_keep_file(scores_file, data, weights, np.ones(len(interaction_rows(data)), dtype=bool))
    if scores_file:
        import pandas as pd

        scored = pd.read_csv(scores_file, dtype={"user": str, "item": str}, keep_default_na=False)
        n_rows = len(scored)
    # stage 2: the candidates, retrained as cached runs
    # the candidates are plain runs with the user's settings: keep all and drop all are then the very Base and
    # Base-0 runs of a comparison (one run each, from the cache)
    base = {k: v for k, v in values.items() if k not in ("trainer", "select_random")}
    if build_config(model, dataset, config_file_list, base)[1]["selection"]:  # the user's own files switch it on
        base["selection"] = False
    rows = [Row(KEEP_ALL, model, None, base), Row(DROP_ALL, f"{model}-0", None, base)]
    # a run with a keep file follows the trainer's select_histories (BIAO-select.yaml turns it on; the protocol's
    # own default, for --keep_file runs, is off); keep all and drop all have no keep file, so it cannot matter
    selected = {**base, "select_histories": config["select_histories"]}
    dropped, keep_files = {KEEP_ALL: 0, DROP_ALL: n_rows}, {}
    for given in config["select_cutoffs"]:
        cutoff = gap_cutoff(scored["weight"].to_numpy()) if given == "gap" else given
        name = f"weight < {cutoff:.3g}" + (" (gap)" if given == "gap" else "")
        keep = (scored["weight"] >= cutoff).to_numpy()
        if keep.all() or not keep.any():  # the same run as keeping or dropping all: not trained twice
            logger.info(f"learn-then-select: cutoff {cutoff:g} {'keeps' if keep.all() else 'drops'} every "
                        f"interaction; no candidate of its own")
            continue
        keep_files[name] = write_mask(scored, keep, f"{stem}-keep-{given:g}.csv" if given != "gap" else
                                    f"{stem}-keep-gap.csv")
        rows.insert(-1, Row(name, model, None, {**selected, "keep_file": keep_files[name]}))
        dropped[name] = int((~keep).sum())
    cache = RunCache(os.path.join(OUT_DIR, "cache"))
    results, failures = run_rows(rows, [seed], parallel.runner(False), cache, dataset, config_file_list, None,
                                 progress=False, pool=pool, need_valid=True)
    if failures:
        raise ConfigError(f"learn-then-select: the retrain '{failures[0][0]}' failed: {failures[0][2]}")
    entries = {row.label: cache.entry(row.spec(seed, dataset, _hashes(config_file_list), None, config_file_list))
               for row in rows}
    predictions = {name: valid_predictions(entry.get("run")) for name, entry in entries.items()}
    if any(p is None for p in predictions.values()):
        raise ConfigError("learn-then-select: a retrain's valid predictions are missing (its checkpoint folder "
                          "was cleaned?); delete its run cache entries or the scores file to rerun")
    chosen, p_values = choose(predictions, config["select_level"], config["select_bootstrap"], seed)
    info = {"chosen": chosen, "scores_file": scores_file, "keep_files": keep_files, "candidates": {
        name: {"valid_auc": entries[name]["valid"]["auc"], "test_auc": results[name][0]["auc"],
               "dropped": dropped[name], "p": p_values.get(name)} for name in entries}}
    logger.info(f"learn-then-select: chose '{chosen}' " + "; ".join(
        f"{n}: valid {c['valid_auc']:.4f}, dropped {c['dropped']}" + (f", p {c['p']:.3g}" if c["p"] else "")
        for n, c in info["candidates"].items()))
    label = chosen
    if config["select_random"]:  # the control: as many interactions dropped, at random
        label, settings = f"random drop of {dropped[chosen]}", base  # keep all or drop all: those very runs
        if 0 < dropped[chosen] < n_rows:
            keep = random_keep(n_rows, dropped[chosen], seed)
            path = keep_files["random"] = write_mask(scored, keep, f"{stem}-random-{dropped[chosen]}.csv")
            settings = {**selected, "keep_file": path}
        control = Row(label, f"{model}-0" if chosen == DROP_ALL else model, None, settings)
        results.update(run_rows([control], [seed], parallel.runner(False), cache, dataset, config_file_list, None,
                                progress=False, pool=pool, need_valid=True)[0])
        entries[label] = cache.entry(control.spec(seed, dataset, _hashes(config_file_list), None, config_file_list))
    entry = entries[label]
    result = dict(results[label][0])
    training = {k: result.pop(k) for k in ("best_epoch", "last_epoch", "still_improving", "collapsed") if k in result}
    return {"best_valid_score": entry["valid"]["auc"], "valid_score_bigger": True, "best_valid_result": entry["valid"],
            "test_result": result, "model_file": entry.get("run"), "device": str(config["device"]),
            "training": training, "selection": info}


def _hashes(config_file_list):
    from recbole_biao.experiments.compare import file_hashes

    return file_hashes(config_file_list)


def selection_summary(result: dict) -> List[str]:
    """Lines describing a selection result for the command line."""
    info = result["selection"]
    lines = [f"learn-then-select chose: {info['chosen']}" + (f" (scores: {info['scores_file']})"
                                                              if info["scores_file"] else " (the guard alone)")]
    for name, c in info["candidates"].items():
        p = "" if c["p"] is None else f", p {c['p']:.3g}"
        lines.append(f"  {name:<14} dropped {c['dropped']:>8}  valid AUC {c['valid_auc']:.4f}  "
                     f"test AUC {c['test_auc']:.4f}{p}")
    return lines
