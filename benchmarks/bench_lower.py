"""Lower-level settings against each other on real data: the earlier global default ("before": batch 512, learning
rate 0.001, 8 epochs, stream pairing), the rule for data nobody has tuned (``recbole_biao/defaults.py``) and the
shipped settings (the dataset's properties file as it is: its ``per_model`` sections, where ``--tune_lower``
wrote them), per backbone and dataset, over seeds, with paired t-tests against "before".

    python benchmarks/bench_lower.py [--datasets ml-1m-genres,movies-books,food-kitchen] [--models CoNet,MiNet,DASL]
                                     [--seeds 5] [--rows before,rule,shipped] [--workers 2] [--page lower-level]

Every run is cached like the runs of ``--compare`` (a repeated command trains only what is missing). The table
goes to ``docs/results/<page>.md`` with the command, date and commit.
"""

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.results_page import write_page  # noqa: E402  (after the path insertion)
from recbole_biao.defaults import suggested_settings  # noqa: E402
from recbole_biao.experiments.commands import OUT_DIR  # noqa: E402
from recbole_biao.experiments.parallel import runner  # noqa: E402
from recbole_biao.experiments.compare import Row, RunCache, aucs, paired_p_value, run_rows  # noqa: E402
from recbole_biao.experiments.parallel import make_pool  # noqa: E402

BEFORE = {"train_batch_size": 512, "learning_rate": 0.001, "train_epochs": ["BOTH:8"], "stopping_step": 3,
          "pairing": "stream", "pairing_ratio": 1}


def rule(model: str, dataset: str) -> dict:
    """The rule's settings for ``model`` on ``dataset``, from the loaded data's counts."""
    from recbole_biao.data import load_data
    from recbole_biao.quick_start import build_config

    _, config = build_config(model, dataset, None, {"state": "ERROR"})
    loaded, data = load_data(config)
    items = loaded.target_domain_dataset.inter_feat[loaded.target_domain_dataset.iid_field].nunique()
    top, sections = suggested_settings(len(data.splits["train_target"]), items)
    return {**top, **sections.get(model, {})}


def shipped(model: str, dataset: str) -> dict:
    """The lower level the dataset's properties file gives ``model``, as explicit values: a run of the search with
    the same values is then the same cached run."""
    from recbole_biao.quick_start import build_config

    _, config = build_config(model, dataset, None, {"state": "ERROR"})
    return {key: config[key] for key in BEFORE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="ml-1m-genres,movies-books,food-kitchen")
    parser.add_argument("--models", default="CoNet,MiNet,DASL")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rows", default="before,rule,shipped",
                        help="which settings to train (before is always trained: the others are compared with it)")
    parser.add_argument("--workers", type=int, default=None, help="runs in parallel on a local Ray")
    parser.add_argument("--page", default="lower-level", help="docs/results/<page>.md")
    args = parser.parse_args()
    started = time.time()
    pool = make_pool(args.workers, None)
    cache = RunCache(os.path.join(OUT_DIR, "cache"))
    seeds = list(range(2023, 2023 + args.seeds))
    wanted = {"before", *(r for r in args.rows.split(",") if r)}
    unknown = wanted - {"before", "rule", "shipped"}
    if unknown:
        parser.error(f"--rows: expected a subset of before,rule,shipped, got {sorted(unknown)}")
    body = ["Target test AUC, mean of the seeds (sd); p: paired t-test against \"before\" (batch 512, learning rate "
            "0.001, 8 epochs, stream pairing: the global default until the search existed). \"rule\": "
            "`recbole_biao/defaults.py`, what a converted pair gets before anyone tunes it. \"shipped\": the "
            "dataset's properties file as it is (the search's `per_model` section where there is one; on a pair "
            "nobody searched, the rule).", ""]
    for dataset in [d for d in args.datasets.split(",") if d]:
        body += [f"## {dataset}", "", "| model | before | rule | shipped | rule - before (p) | shipped - before (p) "
                 "| minutes per run (before / rule / shipped) | collapsed |", "|---|---|---|---|---|---|---|---|"]
        for model in [m for m in args.models.split(",") if m]:
            rows = [Row("before", model, None, BEFORE), Row("rule", model, None, rule(model, dataset)),
                    Row("shipped", model, None, shipped(model, dataset))]
            rows = [r for r in rows if r.label in wanted]
            t0 = time.time()
            results, failures = run_rows(rows, seeds, runner(False), cache, dataset, pool=pool, need_valid=True)
            auc = {label: np.array(aucs(runs)) for label, runs in results.items()}
            minutes = {label: _minutes(cache, row, seeds, dataset) for label, row in zip(results, rows)}
            for label in {"rule", "shipped"} - wanted:
                auc[label], minutes[label] = np.full(len(seeds), np.nan), "-"
            cells = [f"{np.nanmean(auc[k]):.4f} ({np.nanstd(auc[k], ddof=1):.4f})" if k in wanted else "-"
                     for k in ("before", "rule", "shipped")]
            diffs = [f"{np.nanmean(auc[k] - auc['before']):+.4f} ({_p(auc[k], auc['before'])})" if k in wanted else "-"
                     for k in ("rule", "shipped")]
            collapsed = sum(1 for runs in results.values() for r in runs if r is not None and r.get("collapsed"))
            body.append(f"| {model} | {' | '.join(cells)} | {' | '.join(diffs)} | "
                        f"{' / '.join(minutes[k] for k in ('before', 'rule', 'shipped'))} | {collapsed} |")
            body += [f"failed: {model} {label} seed {seed}: {error}" for label, seed, error in failures]
            print(f"{dataset} {model}: {body[-1]} ({time.time() - t0:.0f}s)", flush=True)
        body.append("")
    path = write_page(args.page, "Lower-level settings on real data", body, time.time() - started)
    print("\n".join(body) + f"\nwritten: {path}")


def _p(a, b):
    p = paired_p_value(a, b)
    return "n/a" if math.isnan(p) else f"{p:.3g}"


def _minutes(cache, row, seeds, dataset):
    """The mean wall time of a row's runs, from their cache entries ('?' for entries without it)."""
    from recbole_biao.experiments.compare import file_hashes

    times = [e.get("seconds") for e in (cache.entry(row.spec(s, dataset, file_hashes(None), None)) for s in seeds)
             if e is not None]
    times = [t for t in times if isinstance(t, (int, float))]
    return f"{np.mean(times) / 60:.1f}" if times else "?"


if __name__ == "__main__":
    main()
