"""Seconds per epoch and peak memory of backbones with the base trainer and with BIAO, on the same data.

    python benchmarks/bench_biao.py [--models CoNet MiNet DASL] [--intervals 5 100] [--epochs 2]

Each configuration runs in its own process (so that peak memory is its own), on the embedded ml-1m-genres
data, with each model's and BIAO's default properties (``--neumann_iterations K`` switches to the Neumann
solver). Printed per run: seconds per training epoch, the ratio to the same backbone with the base trainer,
the ratio without the perceptron's forward pass in the lower steps (the part the paper's cost model
1 + (K + 2) / interval leaves out; K = 0 for the identity solver), that theory, the peak
resident memory during training and its growth over the loaded data, and on a GPU the peak CUDA memory.
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
    import torch

    from recbole_biao.data import BiaoDataset, build_cdr_data, data_preparation
    from recbole_biao.quick_start import build_config
    from recbole_biao.utils import get_trainer, init_seed
    from dataset_converters import get_converter

    model_class, config = build_config(spec["model"], None, None, spec["config"], spec.get("trainer"))
    init_seed(config["seed"], config["reproducibility"])
    get_converter(config["dataset_converter"]).prepare(config)
    dataset = BiaoDataset(config)
    train, _, _ = data_preparation(config, build_cdr_data(dataset))
    model = model_class(config, dataset).to(config["device"])
    trainer = get_trainer(config["trainer"])(config, model)
    spent = {"perceptron": 0.0, "upper": 0.0}
    if hasattr(trainer, "upper"):  # time the perceptron's lower-step pass and the upper steps from outside
        trainer.upper.bind(train)
        for name, method in (("perceptron", "weights"), ("upper", "step")):
            inner = getattr(trainer.upper, method)

            def timed(*args, _inner=inner, _name=name, **kwargs):
                start = time.perf_counter()
                try:
                    return _inner(*args, **kwargs)
                finally:
                    spent[_name] += time.perf_counter() - start

            setattr(trainer.upper, method, timed)
    before, peak, running = rss_mb(), [0.0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cuda = torch.cuda.is_available() and config["device"].type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for epoch in range(spec["epochs"]):
        start = time.perf_counter()
        trainer._train_epoch(train, epoch)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    running[0] = False
    sampler.join()
    print(json.dumps({"epoch_s": sum(seconds) / len(seconds), "perceptron_s": spent["perceptron"] / len(seconds),
                      "upper_s": spent["upper"] / len(seconds), "peak_mb": peak[0], "before_mb": before,
                      "cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
                      "device": str(config["device"])}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["CoNet"])
    parser.add_argument("--intervals", type=int, nargs="+", default=[5, 100], help="default: BIAO's (5) and 100")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--neumann_iterations", type=int, default=None, help="use the Neumann solver with K terms")
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--perceptron_history_length", type=int, default=None,
                        help="default: each model's own (CoNet 50, MiNet and DASL 20)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    base_config = {"data_path": args.data_path, "state": "ERROR", "show_progress": False, "checkpoint_dir": "saved"}
    biao = {} if args.neumann_iterations is None else {"hypergrad_method": "neumann",
                                                       "neumann_iterations": args.neumann_iterations}
    if args.perceptron_history_length:
        biao["perceptron_history_length"] = args.perceptron_history_length
    k = args.neumann_iterations or 0
    print(f"ml-1m-genres, {args.epochs} epochs per run, K = {k}, {os.cpu_count()} CPU cores")
    print(f"{'run':<26}{'s/epoch':>9}{'ratio':>8}{'w/o perceptron fwd':>20}{'theory':>8}"
          f"{'peak RSS MB':>13}{'growth MB':>11}{'CUDA MB':>9}")
    for model in args.models:
        runs = [("", None, {})] + [(f" + BIAO interval {i}", "BIAO", {**biao, "interval": i}) for i in args.intervals]
        base = None
        for name, trainer, extra in runs:
            spec = {"model": model, "trainer": trainer, "epochs": args.epochs, "config": {**base_config, **extra}}
            out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{model}{name} failed:\n{out.stderr[-2000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            base = base or r["epoch_s"]
            theory = 1 + (k + 2) / extra["interval"] if trainer else 1.0
            cuda = f"{r['cuda_mb']:>9.0f}" if r["cuda_mb"] is not None else f"{'-':>9}"
            print(f"{model + name:<26}{r['epoch_s']:>9.2f}{r['epoch_s'] / base:>8.2f}"
                  f"{(r['epoch_s'] - r['perceptron_s']) / base:>20.2f}{theory:>8.2f}"
                  f"{r['peak_mb']:>13.0f}{r['peak_mb'] - r['before_mb']:>11.0f}{cuda}", flush=True)
    print(f"device: {r['device']}")


if __name__ == "__main__":
    main()
