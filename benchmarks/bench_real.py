"""The real-data comparisons behind ``docs/results/<page>.md``: for each dataset and backbone, what
``run_recbole_biao.py --model=<M> --dataset=<D> --compare [--selection]`` prints (Base-S, Base-0, Base, soft
BIAO, its control, and with ``--selection`` learn-then-select beside its random-drop control; paired t-tests),
each with its command and the wall time of its runs, at the datasets' shipped (tuned) lower level.

    python benchmarks/bench_real.py [--datasets ml-1m-genres,movies-books] [--models CoNet,MiNet,DASL] [--seeds 5]
                                    [--selection] [--workers 2] [--page real-data]

The runs are the cached runs of ``--compare``: a comparison already run from the command line is read, not
trained again (the same settings and code).
"""

import argparse
import os
import sys
import time
from typing import Dict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.results_page import real_data_arguments, write_page  # noqa: E402  (after the path insertion)
from recbole_biao.experiments import commands  # noqa: E402
from recbole_biao.experiments.compare import RunCache, baseline_rows, file_hashes, selection_rows  # noqa: E402
from recbole_biao.experiments.parallel import make_pool  # noqa: E402


def run_seconds(model: str, dataset: str, seeds: int, selection: bool) -> Dict[str, float]:
    """``{row label: mean seconds of its runs}`` from the runs' cache entries (rows without them left out)."""
    cache = RunCache(os.path.join(commands.OUT_DIR, "cache"))
    out = {}
    for row in baseline_rows(model) + (selection_rows(model) if selection else []):
        times = [e.get("seconds") for e in (cache.entry(row.spec(s, dataset, file_hashes(None), None))
                                            for s in range(2023, 2023 + seeds)) if e is not None]
        times = [t for t in times if isinstance(t, (int, float))]
        if len(times) == seeds:
            out[row.label] = sum(times) / seeds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    real_data_arguments(parser, "real-data")
    parser.add_argument("--models", default="CoNet,MiNet,DASL")
    parser.add_argument("--selection", action="store_true", help="the learn-then-select rows too")
    args = parser.parse_args()
    started = time.time()
    pool = make_pool(args.workers, None)
    body = ["Target test AUC at each dataset's shipped lower level (its properties file, `per_model` sections "
            "included), mean of the seeds; every row of a table trains with the same lower level. The bound line: "
            "weighting or selecting the source loss cannot beat max(Base, Base-0) where the harm enters through "
            "the source inputs; Base-S uses no source at all. The minutes in the line above are this invocation's: "
            "runs found in the run cache were not run again; each table's own line gives its runs' wall times.", ""]
    for dataset in [d for d in args.datasets.split(",") if d]:
        for model in [m for m in args.models.split(",") if m]:
            t0 = time.time()
            table = commands.compare(model, args.seeds, dataset, pool=pool, selection=args.selection)
            seconds = run_seconds(model, dataset, args.seeds, args.selection)
            command = (f"python run_recbole_biao.py --model={model} --dataset={dataset} --compare"
                       + (f" --seeds={args.seeds}" if args.seeds != 5 else "") + (" --selection" * args.selection))
            base = seconds.get(model)
            timing = ", ".join(f"{label} {t:.0f} s" + (f" ({t / base:.1f}x)" if base else "")
                               for label, t in seconds.items())
            body += [f"## {model} on {dataset}", "", f"`{command}`", "",
                     f"Mean wall time of one run (one process; Base = 1x): {timing or 'not recorded'}. "
                     f"All runs: {sum(seconds.values()) * args.seeds / 60:.0f} min.", "", table, ""]
            print(f"{dataset} {model}: done ({time.time() - t0:.0f}s)", flush=True)
    print("written:", write_page(args.page, "BIAO and learn-then-select on real data", body, time.time() - started))


if __name__ == "__main__":
    main()
