"""The ``--compare`` and ``--sweep`` commands of ``run_recbole_biao.py``."""

import hashlib
import os
import re
from typing import Iterable, List, Optional, Sequence, Tuple

import yaml

from recbole_biao.compat import literal_config_values
from recbole_biao.config import check_known_keys, declared_extra_keys
from recbole_biao.errors import ConfigError
from recbole_biao.evaluation import require_ctr
from recbole_biao.experiments import parallel
from recbole_biao.experiments.compare import (CONTROL, RANDOM_DROP, SELECT, RunCache, ablation_rows, baseline_rows,
                                             bound_note, comparison_table, failure_notes, mark_collapsed, pair_note,
                                             model_rows, run_rows, selection_rows, split_rows, sweep_rows,
                                             training_notes, write_table, zoo_biao_notes)
from recbole_biao.experiments.plots import line_chart
from recbole_biao.utils import check_baseline, expand_baselines

__all__ = ["compare", "sweep", "parse_sweep", "dataset_label", "overrides_label"]


OUT_DIR = os.path.join("log", "compare")  # tables, plots and the run cache, next to RecBole's logs


def dataset_label(dataset: Optional[str], config_files: Optional[List[str]] = None) -> str:
    """The data a comparison ran on, for its file names: ``--dataset``, else the last config file that names the
    target domain (by its file name), else ``default`` (the embedded data)."""
    if dataset:
        return dataset
    for path in reversed(config_files or []):
        with open(path, encoding="utf-8") as f:
            content = yaml.safe_load(f)
        if isinstance(content, dict) and "target_domain" in content:
            return os.path.splitext(os.path.basename(path))[0]
    return "default"


def overrides_label(config_dict: Optional[dict]) -> str:
    """``-key=value_...`` for the command-line overrides of a comparison (empty without), so that comparisons
    of different settings never write the same table files; a long one is shortened to a hash."""
    if not config_dict:
        return ""
    text = "_".join(f"{k}={v}" for k, v in sorted(config_dict.items()))
    text = re.sub(r"[^A-Za-z0-9=._+-]", "", text)
    if len(text) > 60:
        text = hashlib.sha1(text.encode()).hexdigest()[:10]
    return f"-{text}"


def compare(model: str, seeds: int = 5, dataset: Optional[str] = None, config_files: Optional[List[str]] = None,
            config_dict: Optional[dict] = None, ablations: bool = False, split_ratios: Optional[List[float]] = None,
            show_epochs: bool = False, out_dir: Optional[str] = None, baselines: Sequence[str] = (), pool=None,
            selection: bool = False) -> str:
    """Run the comparison and write ``log/compare/<model>-<dataset>.csv|.md``; returns the Markdown table.

    ``baselines``: names of models trained with their own properties: the CDR zoo (``CMF``, ...; ``cdr``: all
    of it) or RecBole models (``DeepFM``, ``DIN``, ...) trained on the target domain; their rows count as
    baselines for the paired t-test of Base+BIAO, as Base-S, Base-0 and Base do. ``pool``: a
    :class:`~recbole_biao.experiments.parallel.RayPool` that runs the missing runs in parallel."""
    from recbole_biao.quick_start import build_config

    require_ctr(build_config(model, dataset, config_files, config_dict)[1], "--compare")
    baselines = expand_baselines(baselines)
    for name in baselines:
        check_baseline(name)  # a misspelled name fails before anything trains
    extra = model_rows(baselines)
    rows = baseline_rows(model) + extra
    compared = [r.label for r in rows[:3] + extra if r.trainer is None]
    if selection:
        rows += selection_rows(model)
    if ablations:
        rows += ablation_rows(model)
    if split_ratios:
        rows += split_rows(model, split_ratios)
    out_dir = out_dir or OUT_DIR
    cache = RunCache(os.path.join(out_dir, "cache"))
    results, failures = run_rows(rows, list(range(2023, 2023 + seeds)), parallel.runner(show_epochs), cache, dataset,
                                 config_files, config_dict, pool=pool)
    base_s, biao = rows[0].label, rows[3].label
    table = mark_collapsed(comparison_table(results, base_s, biao, compared), results)
    data_name = dataset_label(dataset, config_files)
    name = f"{model}-{data_name}{overrides_label(config_dict)}"
    title = f"{model} on {data_name if data_name != 'default' else 'the default dataset'}: target test AUC, " \
            f"mean of {seeds} seeds"
    notes = failure_notes(failures) + training_notes(results)
    notes.append(bound_note(results, *(r.label for r in rows[:3])))
    # what the learned weights add over the same run with the perceptron frozen; selection against Base and
    # against dropping as many rows at random
    notes.append(pair_note(results, biao, CONTROL))
    notes += zoo_biao_notes(results, extra)
    if selection:
        notes += [pair_note(results, SELECT, rows[2].label), pair_note(results, SELECT, RANDOM_DROP)]
    return write_table(table, os.path.join(out_dir, name), title, notes, results, list(range(2023, 2023 + seeds)))


def parse_sweep(text: str, extra_keys: Iterable[str] = ()) -> Tuple[str, list]:
    """``interval=20,100,500`` -> ``("interval", [20, 100, 500])`` (values parsed as RecBole parses them)."""
    if "=" not in text:
        raise ConfigError(f"--sweep '{text}': expected key=value1,value2,...")
    key, values = text.split("=", 1)
    parsed = literal_config_values({str(i): v for i, v in enumerate(values.split(",")) if v})
    if not parsed:
        raise ConfigError(f"--sweep '{text}': no values")
    check_known_keys([key.strip()], "--sweep", extra_keys)
    return key.strip(), [parsed[str(i)] for i in range(len(parsed))]


def sweep(model: str, text: str, seeds: int = 1, dataset: Optional[str] = None,
          config_files: Optional[List[str]] = None, config_dict: Optional[dict] = None, show_epochs: bool = False,
          out_dir: Optional[str] = None, pool=None) -> str:
    """BIAO for each value of one key, against the base model; writes a table and a PNG plot."""
    from recbole_biao.quick_start import run_config_files

    key, values = parse_sweep(text, declared_extra_keys(run_config_files(dataset, config_files), config_dict))
    rows = sweep_rows(model, key, values)
    out_dir = out_dir or OUT_DIR
    cache = RunCache(os.path.join(out_dir, "cache"))
    results, failures = run_rows(rows, list(range(2023, 2023 + seeds)), parallel.runner(show_epochs), cache, dataset,
                                 config_files, config_dict, pool=pool)
    table = mark_collapsed(comparison_table(results, rows[0].label), results)
    name = f"{model}-{dataset_label(dataset, config_files)}{overrides_label(config_dict)}-sweep-{key}"
    markdown = write_table(table, os.path.join(out_dir, name),
                           f"{model} + BIAO, {key} sweep: target test AUC, mean of {seeds} seed(s)",
                           failure_notes(failures) + training_notes(results), results,
                           list(range(2023, 2023 + seeds)))
    aucs = [auc for _, auc, _, _, _ in table]
    line_chart([str(v) for v in values], aucs[1:], os.path.join(out_dir, name + ".png"),
               f"{model} + BIAO: impact of {key}", key, "target test AUC", label=f"{model} + BIAO", reference=aucs[0],
               reference_label=f"{model} without BIAO")
    return markdown
