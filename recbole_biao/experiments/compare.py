"""Base-S / Base-0 / Base / Base+BIAO over several seeds, with RelaImpr and a paired t-test (paper Table 1),
optional rows of RecBole's own models, ablation rows (Table 2), split-ratio rows (Table 3) and parameter sweeps
(Figure 5).

Finished runs are cached by configuration and seed, so a repeated or interrupted command reruns only what
is missing.
"""

import csv
import functools
import hashlib
import importlib
import json
import math
import os
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats
from tqdm import tqdm

from recbole_biao.evaluation import rela_impr
from recbole_biao.files import atomic_path, remove_orphans

Results = Dict[str, List[Optional[dict]]]  # per row label, the test result of each seed (None: the run failed)

__all__ = ["Row", "CONTROL", "SELECT", "RANDOM_DROP", "pair_note", "bound_note", "baseline_rows", "selection_rows",
           "ablation_rows", "model_rows", "split_rows", "sweep_rows", "RunCache", "has_metrics",
           "file_hashes", "run_one", "record", "run_rows", "failure_notes", "aucs",
           "training_notes", "mark_collapsed", "settings_fingerprint", "forget_settings", "code_hash", "data_fingerprint",
           "paired_p_value", "comparison_table", "to_markdown", "write_table", "write_seeds"]


# keys of a resolved configuration that do not change what a run computes, or change with every run
VOLATILE_KEYS = ("seed", "checkpoint_dir", "show_progress", "state", "device", "gpu_id", "use_gpu", "weight_log",
                 "weight_log_sample", "log_wandb", "wandb_project")


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """sha1 of the sources that decide what a run computes (the package without its command line and
    experiments, which only schedule runs): cached results of other training code are not reused."""
    digest = hashlib.sha1()
    root = os.path.dirname(importlib.import_module("recbole_biao").__file__)
    for folder, folders, names in os.walk(root):
        folders[:] = sorted(f for f in folders if f not in ("experiments", "__pycache__"))
        for name in sorted(n for n in names if n.endswith((".py", ".cpp")) and n != "cli.py"):
            with open(os.path.join(folder, name), "rb") as f:
                digest.update(os.path.relpath(os.path.join(folder, name), root).encode() + f.read())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=4096)
def _settings(model, trainer, dataset, files, config_json):
    from recbole_biao.compat import plain_data
    from recbole_biao.quick_start import build_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (unknown keys warn once, when the run itself is built)
        try:
            _, config = build_config(model, dataset, list(files) or None, json.loads(config_json), trainer)
        except Exception as e:  # noqa: BLE001  (the run will fail with its own message; it is not cached then)
            return f"unresolved: {type(e).__name__}"
    resolved = {k: v for k, v in config.final_config_dict.items() if k not in VOLATILE_KEYS}
    text = json.dumps(plain_data(resolved), sort_keys=True, default=str)
    return hashlib.sha1((text + code_hash() + data_fingerprint(config)).encode()).hexdigest()[:20]


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:  # (size and mtime: a rewritten file is read again)
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_fingerprint(config) -> str:
    """sha1 of the data a run of ``config`` reads: every file in both domains' dataset folders and the keep file
    of a selection retrain. The properties name the data but not its content: data converted again (other
    filters, a newer dump) or edited under the same names must not reuse a result of the old data. A folder not
    converted yet hashes as absent, so the first run after its conversion trains once more."""
    paths = []
    for domain in ("source_domain", "target_domain"):
        folder = (config.final_config_dict.get(domain) or {}).get("data_path")
        if folder:
            names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
            files = [os.path.join(folder, n) for n in names if not n.startswith(".")]  # (dot: unfinished writes)
            paths += [p for p in files if os.path.isfile(p)] or [folder]
    keep_file = config.final_config_dict.get("keep_file")
    paths += [keep_file] if keep_file else []
    digest = hashlib.sha1()
    for path in paths:
        if os.path.isfile(path):
            stat = os.stat(path)
            digest.update(f"{path}\0{_file_digest(path, stat.st_size, stat.st_mtime_ns)}\0".encode())
        else:
            digest.update(f"{path}\0absent\0".encode())
    return digest.hexdigest()[:16]


def forget_settings() -> None:
    """Drop the fingerprints resolved so far: one process resolves each configuration once, so a process that
    outlives a change of the data files (a notebook, a test) calls this to see it."""
    _settings.cache_clear()


def settings_fingerprint(model: str, trainer: Optional[str], dataset: Optional[str], config_files: Optional[List[str]],
                         config_dict: Optional[dict]) -> str:
    """A hash of everything a run of ``model`` would compute with: its resolved configuration (every
    properties file it reads, the dataset's ``per_model`` section included, and the overrides), the code and
    the data files.
    Part of a run's cache key, so that retuned settings or changed code never reuse an older result."""
    return _settings(model, trainer, dataset, tuple(config_files or ()),
                     json.dumps(config_dict or {}, sort_keys=True, default=str))


class Row:
    """One line of a comparison table: a model name, a trainer and properties overrides."""

    def __init__(self, label: str, model: str, trainer: Optional[str] = None, values: Optional[dict] = None):
        self.label, self.model, self.trainer, self.values = label, model, trainer, dict(values or {})

    def spec(self, seed: int, dataset: Optional[str], file_hashes: Dict[str, str], config_dict: Optional[dict],
             config_files: Optional[List[str]] = None) -> dict:
        """Everything that identifies a run; ``file_hashes`` maps each config file to its content hash."""
        config = {**(config_dict or {}), **self.values}
        return {"model": self.model, "trainer": self.trainer, "dataset": dataset, "config_files": file_hashes,
                "config": config, "seed": seed,
                "settings": settings_fingerprint(self.model, self.trainer, dataset, config_files, config)}


CONTROL = "BIAO upper lr 0 (control)"
SELECT, RANDOM_DROP = "learn, then select", "random drop (same size)"


def baseline_rows(model: str) -> List["Row"]:
    """Base-S, Base-0, Base, Base+BIAO and the control that BIAO's learned weights are judged against (upper
    learning rate 0: the same run with the perceptron frozen at its start)."""
    return [Row(f"{model}-S", f"{model}-S"), Row(f"{model}-0", f"{model}-0"), Row(model, model),
            Row(f"{model}+BIAO", model, "BIAO"), Row(CONTROL, model, "BIAO", {"upper_learning_rate": 0.0})]


def selection_rows(model: str) -> List["Row"]:
    """Learn, then select (trainer BIAO-select) and its control: as many source interactions dropped at random."""
    return [Row(SELECT, model, "BIAO-select"), Row(RANDOM_DROP, model, "BIAO-select", {"select_random": True})]


def ablation_rows(model: str) -> List["Row"]:
    """Paper Table 2 (w/o global, w/o user), a further attribution control (gamma only: uniform weights, only
    their scale learned) and the two reference profiles (the paper's settings, the authors' code's settings)."""
    return [Row("w/o global", model, "BIAO", {"use_global": False}),
            Row("w/o user", model, "BIAO", {"use_user": False}),
            Row("BIAO gamma only", model, "BIAO", {"perceptron_mode": "gamma_only"}),
            Row("BIAO-paper", model, "BIAO-paper"),
            Row("BIAO-reference", model, "BIAO-reference")]


def model_rows(names: List[str]) -> List["Row"]:
    """One row per model name given as a baseline, trained with its own properties: a zoo model (``CMF``) or a
    RecBole model (``DeepFM``, trained unchanged on the target domain); the label says which kind it is. A
    name ``<model>+BIAO`` gives two rows: the model under trainer BIAO and that run's control (upper lr 0)."""
    from recbole_biao.utils import BIAO_SUFFIX, model_kind

    rows = []
    for name in names:
        if name.endswith(BIAO_SUFFIX):
            base = name[: -len(BIAO_SUFFIX)]
            rows += [Row(f"{name} (cross-domain, BIAO)", base, "BIAO"),
                     Row(f"{name} {CONTROL}", base, "BIAO", {"upper_learning_rate": 0.0})]
        else:
            rows.append(Row(f"{name} ({model_kind(name)})", name))
    return rows


def zoo_biao_notes(results: "Results", rows: List["Row"]) -> List[str]:
    """For each zoo model's BIAO row: its paired difference to its control and, where that row ran, to the
    model under its own trainer."""
    plain = {r.model: r.label for r in rows if r.trainer is None}
    control = {r.model: r.label for r in rows if r.trainer == "BIAO" and r.values.get("upper_learning_rate") == 0}
    notes = []
    for row in rows:
        if row.trainer == "BIAO" and row.model in control and row.label != control[row.model]:
            notes.append(pair_note(results, row.label, control[row.model]))
            if row.model in plain:
                notes.append(pair_note(results, row.label, plain[row.model]))
    return notes


def split_rows(model: str, ratios: Sequence[float] = (0.01, 0.05, 0.1)) -> List["Row"]:
    return [Row(f"split {r}", model, "BIAO", {"dev_strategy": "split", "dev_split_ratio": r}) for r in ratios]


def sweep_rows(model: str, key: str, values: list) -> List["Row"]:
    """BIAO with ``key`` set to each of ``values``, plus the base model as the reference."""
    return [Row(model, model)] + [Row(f"{key}={v}", model, "BIAO", {key: v}) for v in values]


def has_metrics(result) -> bool:
    """Whether a cached result holds what a run reports: an AUC (the CTR protocol) or ranking metrics (``name@K``),
    every one a number."""
    if not isinstance(result, dict):
        return False
    metrics = [v for k, v in result.items() if k == "auc" or "@" in k]
    return bool(metrics) and all(isinstance(v, float) for v in metrics)


class RunCache:
    """Results of finished runs, one JSON file per (configuration, seed), each with the checkpoint of the run
    it came from. Files are written under a temporary name and renamed; an unreadable one is discarded (with a
    warning) and its run recomputed."""

    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        remove_orphans(folder)  # entries half-written by killed comparisons

    # keys that change how a run reports, never what it computes (the seed is the spec's own): a run started
    # by the learn-then-select pipeline carries them, the same run started by --compare does not
    REPORTING = ("seed", "show_progress", "state")

    def _path(self, spec):
        config = {k: v for k, v in (spec.get("config") or {}).items() if k not in self.REPORTING}
        text = json.dumps({**spec, "config": config}, sort_keys=True, default=str)
        key = hashlib.sha1(text.encode()).hexdigest()[:20]
        return os.path.join(self.folder, f"{key}.json")

    def entry(self, spec: dict) -> Optional[dict]:
        """``{"result": test result, "valid": best valid result or None, ...}`` of a finished run, or None."""
        path = self._path(spec)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                entry = json.load(f)
            result = entry["result"]
            if not has_metrics(result):
                raise ValueError("no AUC and no ranking metric")
            valid = entry.get("valid")
            entry["valid"] = valid if has_metrics(valid) else None
            return entry
        except (OSError, ValueError, KeyError, TypeError) as e:
            warnings.warn(f"run cache: discarding unreadable entry {path} ({e}); the run is recomputed")
            os.remove(path)
            return None

    def put(self, spec: dict, result: dict, run: Optional[str] = None, valid: Optional[dict] = None,
            seconds: Optional[float] = None) -> None:
        with atomic_path(self._path(spec)) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump({"spec": spec, "run": run, "result": result, "valid": valid, "seconds": seconds}, f, default=str)


def file_hashes(config_files: Optional[List[str]]) -> Dict[str, str]:
    """``{path: sha1 of its content}``: a run's config files enter its cache key by content."""
    hashes = {}
    for path in config_files or []:
        with open(path, "rb") as f:
            hashes[path] = hashlib.sha1(f.read()).hexdigest()
    return hashes


def run_one(row: Row, seed: int, runner: Callable[[dict], dict], cache: "RunCache", dataset: Optional[str] = None,
            config_files: Optional[List[str]] = None, config_dict: Optional[dict] = None, need_valid: bool = True,
            hashes: Optional[Dict[str, str]] = None) -> Tuple[Optional[dict], Any]:
    """Run (or reuse) ``row`` with ``seed``; returns ``(test result, best valid result)`` (the valid result is
    None for an entry cached without it when ``need_valid`` is false; with it, such an entry is rerun), or
    ``(None, error)`` when the run failed (nothing is cached then)."""
    from recbole_biao.experiments.parallel import run_safely

    spec = row.spec(seed, dataset, file_hashes(config_files) if hashes is None else hashes, config_dict, config_files)
    entry = cache.entry(spec)
    if entry is None or (need_valid and entry["valid"] is None):
        entry = record(cache, spec, run_safely(runner, spec))
        if "error" in entry:
            return None, entry["error"]
    return entry["result"], entry["valid"]


def record(cache: "RunCache", spec: dict, out: dict) -> dict:
    """Cache a run's output (:func:`~recbole_biao.experiments.parallel.run_safely`'s dict); returns the entry
    (``{"error": ...}`` for a failed run, which is not cached)."""
    if "error" in out:
        return out
    valid = {k: float(v) for k, v in (out.get("best_valid_result") or {}).items()} or None
    result = {**out["test_result"], **(out.get("training") or {})}  # the metrics, then how training went
    cache.put(spec, result, out.get("model_file"), valid, out.get("seconds"))
    return {"result": result, "valid": valid}


def run_rows(rows: List[Row], seeds: List[int], runner: Callable[[dict], dict], cache: "RunCache",
             dataset: Optional[str] = None, config_files: Optional[List[str]] = None,
             config_dict: Optional[dict] = None, progress: bool = True, pool=None, need_valid: bool = False
             ) -> Tuple[Results, list]:
    """Run (or reuse) every row for every seed; returns ``({label: [test result or None per seed]}, failures)``
    with ``failures`` a list of ``(label, seed, error)``: a failed run is reported, the others go on.

    ``runner(spec)`` trains one configuration and returns ``run_recbole_biao``'s dict (``test_result``,
    ``best_valid_result`` and ``model_file``, the run's checkpoint, which the cache entry records). With a
    ``pool`` (:class:`~recbole_biao.experiments.parallel.RayPool`) the runs missing from the cache are fanned out
    first; the driver writes each one's cache entry as it ends, then every result is read as in a serial run.
    """
    jobs = [(row, seed) for row in rows for seed in seeds]
    hashes = file_hashes(config_files)
    specs = [row.spec(seed, dataset, hashes, config_dict, config_files) for row, seed in jobs]
    failed = {}
    if pool is not None:
        entries = [cache.entry(spec) for spec in specs]
        missing = [i for i, entry in enumerate(entries) if entry is None or (need_valid and entry["valid"] is None)]
        def finished(k: int, out: dict) -> None:  # recorded as it ends: an interrupted comparison keeps the finished runs
            entry = record(cache, specs[missing[k]], out)
            if "error" in entry:
                failed[missing[k]] = entry["error"]

        pool.map([specs[i] for i in missing], lambda spec: f"{spec['model']} seed {spec['seed']}", finished)
    results, failures = {row.label: [] for row in rows}, []
    bar = tqdm(total=len(jobs), desc="runs", ncols=100, disable=not progress or pool is not None)
    started = time.time()
    for i, (row, seed) in enumerate(jobs):
        if i in failed:
            result, error = None, failed[i]
        else:
            result, error = run_one(row, seed, runner, cache, dataset, config_files, config_dict, need_valid, hashes)
        results[row.label].append(result)
        if result is None:
            failures.append((row.label, seed, error))
        bar.set_postfix_str(f"{row.label} seed {seed}; elapsed {time.time() - started:.0f}s")
        bar.update()
    bar.close()
    return results, failures


def failure_notes(failures: List[tuple]) -> List[str]:
    """One line per failed run, for the notes under a table."""
    return [f"failed: {label}, seed {seed}: {error}" for label, seed, error in failures]


def paired_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided paired t-test of ``a`` against ``b`` (nan with fewer than two pairs or no variance); a pair with
    a missing value (None or nan: a failed run) is left out."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    both = ~(np.isnan(a) | np.isnan(b))
    a, b = a[both], b[both]
    if len(a) < 2 or np.allclose(a - b, (a - b)[0]):
        return float("nan")
    return float(stats.ttest_rel(a, b).pvalue)


def comparison_table(results: Results, reference: str, tested: Optional[str] = None, baselines: Sequence[str] = ()
                     ) -> List[tuple]:
    """Rows ``(label, mean AUC, RelaImpr % vs reference, star, p)`` from ``{label: [result per seed]}``.

    ``tested`` (e.g. Base+BIAO) gets a paired t-test against the best of ``baselines`` by mean AUC and a
    star when p < 0.05 and it is better.
    """
    auc = {label: aucs(rs) for label, rs in results.items()}
    # the mean over a row's finished runs (a failed or collapsed run is listed under the table)
    mean = {label: float(np.nanmean(v)) if not np.all(np.isnan(v)) else float("nan") for label, v in auc.items()}
    p, star = float("nan"), ""
    if tested and baselines:
        best = max(baselines, key=lambda label: -math.inf if math.isnan(mean[label]) else mean[label])
        p = paired_p_value(auc[tested], auc[best])
        star = "*" if not math.isnan(p) and p < 0.05 and mean[tested] > mean[best] else ""
    table = []
    for label in results:
        is_tested = label == tested
        table.append((label, mean[label], rela_impr(mean[label], mean[reference]),
                      star if is_tested else "", p if is_tested else float("nan")))
    return table


def aucs(runs: List[Optional[dict]]) -> List[float]:
    """The test AUC of each run of a row; nan for a failed run (None) and for a collapsed one (its model
    predicts one constant, so its AUC of 0.5 measures nothing)."""
    return [r["auc"] if r is not None and not r.get("collapsed") else float("nan") for r in runs]


def training_notes(results: Results) -> List[str]:
    """Lines for the notes under a table: per row, the runs that collapsed (left out of the means and tests) and
    those whose best valid epoch was the last one trained (more epochs might have helped)."""
    notes = []
    for label, runs in results.items():
        done = [r for r in runs if r is not None]
        collapsed = sum(bool(r.get("collapsed")) for r in done)
        improving = sum(bool(r.get("still_improving")) for r in done)
        if collapsed:
            notes.append(f"collapsed: {label}, {collapsed} of {len(runs)} runs (one constant prediction; left out)")
        if improving:
            notes.append(f"still improving: {label}, {improving} of {len(runs)} runs had their best valid AUC at the "
                         f"last epoch (raise train_epochs)")
    return notes


def mark_collapsed(table: List[tuple], results: Results) -> List[tuple]:
    """The table with ``(k of n collapsed)`` after the label of every row that has collapsed runs."""
    marked = []
    for label, *rest in table:
        runs = results.get(label, [])
        k = sum(1 for r in runs if r is not None and r.get("collapsed"))
        marked.append((f"{label} ({k} of {len(runs)} collapsed, left out)" if k else label, *rest))
    return marked


def bound_note(results: Results, base_s: str, base_0: str, base: str) -> str:
    """One line: what weighting or selecting the source *loss* can reach, max(Base, Base-0), beside Base-S (where
    the harm enters through the source inputs, only the target-only model avoids it)."""
    mean = {label: float(np.nanmean(aucs(results[label]))) for label in (base_s, base_0, base)}
    bound = max(mean[base], mean[base_0])
    return (f"bound of any weighting or selection of the source loss: max({base}, {base_0}) = {bound:.4f}; "
            f"{base_s} (no source at all) {mean[base_s]:.4f}")


def pair_note(results: Results, a: str, b: str) -> str:
    """One line: row ``a`` against row ``b`` (mean AUC difference over the seeds both finished, paired t-test)."""
    x, y = np.array(aucs(results[a])), np.array(aucs(results[b]))
    p = paired_p_value(x, y)
    both = ~(np.isnan(x) | np.isnan(y))
    return (f"{a} - {b}: {np.mean(x[both] - y[both]) if both.any() else float('nan'):+.4f} AUC "
            f"(paired t-test p = {'n/a' if math.isnan(p) else f'{p:.3g}'})")


def to_markdown(table: List[tuple], title: str = "") -> str:
    lines = [f"**{title}**", ""] if title else []
    lines += ["| model | AUC | RelaImpr | p (paired t-test vs best baseline) |", "|---|---|---|---|"]
    for label, auc, impr, star, p in table:
        lines.append(f"| {label} | {auc:.4f}{star} | {impr:.2f}% | {'' if math.isnan(p) else f'{p:.3g}'} |")
    return "\n".join(lines)


def write_table(table: List[tuple], path_stem: str, title: str = "", notes: Sequence[str] = (),
                results: Optional[Results] = None, seeds: Sequence[int] = ()) -> str:
    """Write ``<path_stem>.csv`` and ``<path_stem>.md`` (with ``notes`` under the table) and, given the
    ``results`` per row and the ``seeds``, ``<path_stem>-seeds.csv``: every run's metrics, the values behind
    the means and the paired tests. Returns the Markdown."""
    with atomic_path(path_stem + ".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "auc", "rela_impr_percent", "significant", "p_value"])
        for label, auc, impr, star, p in table:
            writer.writerow([label, f"{auc:.6f}", f"{impr:.4f}", bool(star), "" if math.isnan(p) else f"{p:.6g}"])
    markdown = "\n\n".join([to_markdown(table, title), *notes])
    if results is not None:
        write_seeds(results, seeds, path_stem + "-seeds.csv")
        markdown += f"\n\nper seed: {os.path.basename(path_stem)}-seeds.csv"
    with atomic_path(path_stem + ".md") as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(markdown + "\n")
    return markdown


def write_seeds(results: Results, seeds: Sequence[int], path: str) -> None:
    """One line per (row, seed): its test metrics and how training went (empty where the run failed)."""
    runs = [(label, seed, run) for label, row_runs in results.items() for seed, run in zip(seeds, row_runs)]
    metrics = list(dict.fromkeys(k for _, _, run in runs if run for k in run))
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "seed", *metrics])
        for label, seed, run in runs:
            writer.writerow([label, seed, *("" if run is None else run.get(k, "") for k in metrics)])
