"""NATR's evaluation against the formulation it replaced, measured in one run.

    python benchmarks/bench_zoo_eval.py [--dataset movies-books] [--repeats 3]

One valid pass of the ranking protocol (100 drawn candidates per user, as in bench_zoo's ranking table) with the
transfer layer applied to every user once per pass (shipped) against once per scored candidate's earlier users
(before). Both paths run on the same untrained model (the cost does not depend on the weights), alternately,
``--repeats`` times; printed: the fastest seconds of each, their ratio, and the largest difference between their
metrics.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_zoo import ranking_values  # noqa: E402  (this script's folder is on the path)
from recbole_biao.quick_start import build_config, prepare_run  # noqa: E402


def fastest(paths: dict, repeats: int) -> dict:
    """``{name: (seconds, output)}``: each path's fastest of ``repeats`` calls, the paths alternating."""
    best = {}
    for _ in range(repeats):
        for name, call in paths.items():
            start = time.perf_counter()
            out = call()
            seconds = time.perf_counter() - start
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, out)
    return best


def report(title: str, best: dict, difference: float) -> None:
    (new, _), (old, _) = best["shipped"], best["before"]
    print(f"{title}: shipped {new:.2f} s, before {old:.2f} s, before / shipped {old / new:.2f}x; "
          f"largest output difference {difference:.2e}", flush=True)


def natr(dataset: str, repeats: int) -> None:
    _, (_, valid, _), trainer = prepare_run(*build_config("NATR", dataset, None, ranking_values("uni100")))
    model = trainer.model

    def before():  # the transfer layer over the earlier users of every scored candidate
        model.transferred = lambda users: model.transfer(model.users["source"](users).detach())
        try:
            return trainer.evaluate(valid, load_best_model=False, show_progress=False)
        finally:
            del model.transferred

    best = fastest({"shipped": lambda: trainer.evaluate(valid, load_best_model=False, show_progress=False),
                    "before": before}, repeats)
    a, b = best["shipped"][1], best["before"][1]
    report(f"NATR valid pass ({dataset}, 100 drawn candidates)", best, max(abs(a[k] - b[k]) for k in a))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="movies-books")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    natr(args.dataset, args.repeats)


if __name__ == "__main__":
    main()
