"""Seconds per epoch and peak memory of CoNet with the base trainer and with BIAO, on the same data.

    python benchmarks/bench_biao.py [--intervals 20 100] [--epochs 2] [--model CoNet] [--data_path dataset/]

Each configuration runs in its own process (so that peak memory is its own), on the embedded ml-1m-genres
data, with K = 3. Printed: seconds per training epoch, the ratio to the base trainer, the ratio without the
perceptron's forward pass in the lower steps (the part the paper's cost model 1 + (K + 2) / interval leaves
out), the theory, and the peak resident memory during training (and its growth over the loaded data).
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(spec):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from recbole_biao.data import BiaoDataset, build_cdr_data, data_preparation
    from recbole_biao.quick_start import build_config
    from recbole_biao.utils import get_trainer, init_seed
    from dataset_converters import get_converter

    model_class, config = build_config(spec["model"], None, None, spec["config"], spec.get("trainer"))
    init_seed(config["seed"], config["reproducibility"])
    get_converter(config["dataset_converter"]).prepare(config)
    dataset = BiaoDataset(config)
    train, _, _ = data_preparation(config, build_cdr_data(dataset))
    model = model_class(config, dataset)
    trainer = get_trainer(config["trainer"])(config, model)
    if hasattr(trainer, "_make_streams"):
        trainer._make_streams(train)
    before, peak, running = rss_mb(), [0.0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    seconds = []
    for epoch in range(spec["epochs"]):
        start = time.perf_counter()
        trainer._train_epoch(train, epoch)
        seconds.append(time.perf_counter() - start)
    running[0] = False
    sampler.join()
    extra = getattr(trainer, "seconds", {"perceptron": 0.0, "upper": 0.0})
    print(json.dumps({"epoch_s": sum(seconds) / len(seconds), "perceptron_s": extra["perceptron"] / len(seconds),
                      "upper_s": extra["upper"] / len(seconds), "peak_mb": peak[0], "before_mb": before}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="CoNet")
    parser.add_argument("--intervals", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--neumann_iterations", type=int, default=3)
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--perceptron_history_length", type=int, default=50)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    base_config = {"data_path": args.data_path, "state": "ERROR", "show_progress": False, "checkpoint_dir": "saved"}
    biao = {"neumann_iterations": args.neumann_iterations, "perceptron_history_length": args.perceptron_history_length}
    runs = [("base", None, {})] + [(f"BIAO interval {i}", "BIAO", {**biao, "interval": i}) for i in args.intervals]
    results = []
    for name, trainer, extra in runs:
        spec = {"model": args.model, "trainer": trainer, "epochs": args.epochs, "config": {**base_config, **extra}}
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{name} failed:\n{out.stderr[-2000:]}")
        results.append((name, extra.get("interval"), json.loads(out.stdout.strip().splitlines()[-1])))
    base = results[0][2]["epoch_s"]
    k = args.neumann_iterations
    print(f"{args.model} on ml-1m-genres, {args.epochs} epochs each, K = {k}, perceptron history "
          f"{args.perceptron_history_length}, {os.cpu_count()} CPU cores")
    print(f"{'run':<20}{'s/epoch':>9}{'ratio':>8}{'ratio w/o perceptron fwd':>26}{'theory':>8}"
          f"{'peak RSS MB':>13}{'growth MB':>11}")
    for name, interval, r in results:
        theory = 1 + (k + 2) / interval if interval else 1.0
        print(f"{name:<20}{r['epoch_s']:>9.2f}{r['epoch_s'] / base:>8.2f}"
              f"{(r['epoch_s'] - r['perceptron_s']) / base:>26.2f}{theory:>8.2f}"
              f"{r['peak_mb']:>13.0f}{r['peak_mb'] - r['before_mb']:>11.0f}")


if __name__ == "__main__":
    main()
