"""Does BIAO's scale gamma learn how much source the target wants? gamma is the one part of the perceptron that
sets the source's total weight (the normalisation only redistributes it), so with ``perceptron_mode: gamma_only``
(uniform weights, only gamma learned) the upper level can do exactly one thing: turn the source up or down.

For each dataset, per seed: Base-S, Base-0 and Base (the run cache of ``--compare``), then gamma-only BIAO and its
control (the same run with upper learning rate 0) under each dev strategy: ``reuse`` (the paper's reorder-and-reuse:
dev batches from the target rows the model trains on) and ``split`` (a held-out share of the target training rows,
never trained on). Prints the mean test AUC, gamma after training per seed and paired t-tests; with ``--page`` a
result page.

    python benchmarks/bench_gamma.py [--datasets movies-books,ml-1m-genres] [--model CoNet] [--seeds 5]
                                     [--page gamma]
"""

import argparse
import os
import sys
import time
from typing import Dict, List

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.results_page import write_page  # noqa: E402  (after the path insertion)
from recbole_biao.experiments import commands, parallel  # noqa: E402
from recbole_biao.experiments.compare import RunCache, baseline_rows, paired_p_value, run_rows  # noqa: E402
from recbole_biao.quick_start import run_recbole_biao  # noqa: E402

DEV_STRATEGIES = ("reuse", "split")


def gamma_run(model: str, dataset: str, seed: int, values: dict) -> Dict[str, float]:
    """One gamma-only BIAO run: its test AUC and gamma after the last epoch."""
    held = {}
    out = run_recbole_biao(model, dataset, config_dict={"perceptron_mode": "gamma_only", "seed": seed,
                                                        "show_progress": False, "state": "WARNING", **values},
                           trainer="BIAO", saved=True, trainer_hook=lambda trainer, data: held.update(trainer=trainer))
    return {"auc": float(out["test_result"]["auc"]), "gamma": float(held["trainer"].upper.perceptron.gamma.detach())}


def dataset_table(model: str, dataset: str, seeds: List[int]) -> List[str]:
    """The Markdown lines of one dataset: the rows' mean AUC, gamma per seed, paired tests."""
    rows = baseline_rows(model)[:3]  # Base-S, Base-0, Base
    cached, failures = run_rows(rows, seeds, parallel.runner(False), RunCache(os.path.join(commands.OUT_DIR, "cache")),
                                dataset)
    if failures:
        raise SystemExit(f"bench_gamma: {failures[0][0]} seed {failures[0][1]} failed: {failures[0][2]}")
    auc = {label: [float(r["auc"]) for r in results] for label, results in cached.items()}
    gammas: Dict[str, List[float]] = {}
    for dev in DEV_STRATEGIES:
        for label, values in ((f"gamma-only BIAO, dev {dev}", {"dev_strategy": dev}),
                              (f"control, dev {dev}", {"dev_strategy": dev, "upper_learning_rate": 0.0})):
            runs = [gamma_run(model, dataset, s, values) for s in seeds]
            auc[label], gammas[label] = [r["auc"] for r in runs], [r["gamma"] for r in runs]
            print(f"{dataset} {label}: AUC {np.mean(auc[label]):.4f}, gamma "
                  + " ".join(f"{g:.2f}" for g in gammas[label]), flush=True)
    lines = [f"## {model} on {dataset}", "", "| run | test AUC | gamma after training, per seed |", "|---|---|---|"]
    for label, values in auc.items():
        cell = " ".join(f"{g:.2f}" for g in gammas.get(label, []))
        lines.append(f"| {label} | {np.mean(values):.4f} | {cell} |")
    base = auc[model]
    lines += ["", f"- {model} - {model}-0: {np.mean(base) - np.mean(auc[f'{model}-0']):+.4f} AUC "
                  f"(p {paired_p_value(base, auc[f'{model}-0']):.3g}): "
                  + ("the source loss helps Base" if np.mean(base) > np.mean(auc[f"{model}-0"]) else
                     "the source loss costs Base") + " here"]
    for dev in DEV_STRATEGIES:
        learned, control = auc[f"gamma-only BIAO, dev {dev}"], auc[f"control, dev {dev}"]
        g = gammas[f"gamma-only BIAO, dev {dev}"]
        lines.append(f"- dev {dev}: gamma below 1 in {sum(x < 1 for x in g)} of {len(g)} seeds (mean {np.mean(g):.2f}); "
                     f"gamma-only - control {np.mean(learned) - np.mean(control):+.4f} AUC "
                     f"(p {paired_p_value(learned, control):.3g})")
    reuse, split = (gammas[f"gamma-only BIAO, dev {dev}"] for dev in DEV_STRATEGIES)
    lines.append(f"- gamma, dev split - dev reuse: {np.mean(split) - np.mean(reuse):+.2f} "
                 f"(p {paired_p_value(split, reuse):.3g})")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="movies-books,ml-1m-genres")
    parser.add_argument("--model", default="CoNet")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--page", default=None, help="also write docs/results/<page>.md")
    args = parser.parse_args()
    started = time.time()
    seeds = list(range(2023, 2023 + args.seeds))
    body = ["gamma starts at 1 (Base's weight). Test AUC is the mean over the seeds; each control is the same "
            "run with upper learning rate 0 (gamma stays 1), so `split`'s control is Base trained without the "
            "held-out dev rows.", ""]
    for dataset in [d for d in args.datasets.split(",") if d]:
        body += dataset_table(args.model, dataset, seeds)
    print("\n".join(body))
    if args.page:
        print("written:", write_page(args.page, "Does the source's total weight (gamma) follow the harm?", body,
                                     time.time() - started))


if __name__ == "__main__":
    main()
