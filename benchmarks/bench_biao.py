"""Seconds per epoch and peak memory of backbones with the base trainer and with BIAO, on the same data.

    python benchmarks/bench_biao.py [--models CoNet MiNet DASL] [--intervals default 100] [--epochs 2] [--repeats 3]
                                    [--selection]

Each configuration runs in its own process (so that peak memory is its own), ``--repeats`` times, interleaved with
the other configurations of the model, keeping its fastest process; on the embedded ml-1m-genres data, with each
model's and BIAO's default properties (``--neumann_iterations K`` switches to the Neumann solver, ``--set key=value
...`` sets other BIAO properties). Printed per run, for its fastest epoch: seconds, the ratio to the same backbone
with the base trainer, the paper's cost model 1 + (K + 2) / interval (K = 0 for the identity solver), where the
seconds go (building batches, gathering histories, the perceptron's lower-step pass, the model's own step, the
upper steps; timed from outside the trainer), the peak resident memory during training and its growth over the
loaded data, and on a GPU the peak CUDA memory. Then ``perceptron_pass.py``: the perceptron's lower-step pass
against the formulation it replaced. ``--selection``: the wall time of whole runs, Base against the learn-then-select
pipeline (``--trainer=BIAO-select``: stage 1 and every retrained candidate), each in a fresh process.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

from bench_planted import parse_set  # (this script's folder is on the path)

PARTS = ("loading", "gathering", "perceptron", "model", "upper")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Sections:
    """Exclusive seconds per named section of the code: time spent in a section called from inside another
    counts only for the inner one, so the sections and the rest add up to the epoch."""

    def __init__(self, synchronize=None):
        self.seconds, self._nested, self.synchronize = {}, [], synchronize or (lambda: None)

    def wrap(self, name, function):
        def timed(*args, **kwargs):
            self._nested.append(0.0)
            self.synchronize()
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.synchronize()
                spent = time.perf_counter() - start
                inner = self._nested.pop()
                self.seconds[name] = self.seconds.get(name, 0.0) + spent - inner
                if self._nested:
                    self._nested[-1] += spent
        return timed


class TimedLoader:
    """Iterates ``loader`` with the time of each ``next`` in the section ``loading``."""

    def __init__(self, loader, sections):
        self.loader, self.sections = loader, sections

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        iterator = iter(self.loader)
        step = self.sections.wrap("loading", lambda: next(iterator, None))
        while (batch := step()) is not None:
            yield batch


def whole_run(spec):
    """One whole run (data loading, training, evaluation) in this process, from an empty run cache: prints its
    wall time. For the learn-then-select pipeline, every stage and candidate is included."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from recbole_biao.quick_start import run_recbole_biao

    start = time.perf_counter()
    result = run_recbole_biao(spec["model"], None, None, spec["config"], spec.get("trainer"))
    print(json.dumps({"seconds": time.perf_counter() - start, "auc": result["test_result"]["auc"]}))


def child(spec):
    if spec.get("whole"):
        return whole_run(spec)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import torch

    from recbole_biao.quick_start import build_config, prepare_run
    from recbole_biao.utils import init_seed

    model_class, config = build_config(spec["model"], None, None, spec["config"], spec.get("trainer"))
    init_seed(config["seed"], config["reproducibility"])
    data, (train, _, _), trainer = prepare_run(model_class, config)
    cuda = torch.cuda.is_available() and config["device"].type == "cuda"
    sections = Sections(torch.cuda.synchronize if cuda else None)
    for index in data.history.values():  # history gathering, wherever it happens (loader or upper step)
        index.gather = sections.wrap("gathering", index.gather)
    if hasattr(trainer, "upper"):  # the perceptron's lower-step pass and the upper steps, timed from outside
        trainer.upper.bind(train)
        trainer.upper.weights = sections.wrap("perceptron", trainer.upper.weights)
        trainer.upper.step = sections.wrap("upper", trainer.upper.step)
    before, peak, running = rss_mb(), [0.0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    epochs = []  # (seconds, sections) of each epoch
    for epoch in range(spec["epochs"]):
        sections.seconds = {}
        start = time.perf_counter()
        trainer.train_epoch(TimedLoader(train, sections), epoch)
        if cuda:
            torch.cuda.synchronize()
        epochs.append((time.perf_counter() - start, sections.seconds))
    running[0] = False
    sampler.join()
    # the fastest epoch: the least disturbed by whatever else the machine did (timings here vary by ~20 %)
    epoch_s, parts = min(epochs, key=lambda e: e[0])
    parts["model"] = epoch_s - sum(parts.values())  # the model's forward, backward and step, and the rest
    print(json.dumps({"epoch_s": epoch_s, "parts": parts, "steps": len(train),
                      "peak_mb": peak[0], "before_mb": before,
                      "cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
                      "device": str(config["device"]) + (f" ({torch.cuda.get_device_name(0)})" if cuda else "")}))


def default_interval(model: str, data_path: str) -> int:
    """The interval a plain ``--trainer=BIAO`` run of ``model`` uses (BIAO.yaml and its ``per_model`` section)."""
    from recbole_biao.quick_start import build_config

    return build_config(model, "ml-1m-genres", None, {"data_path": data_path}, "BIAO")[1]["interval"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["CoNet", "MiNet", "DASL"])
    parser.add_argument("--intervals", nargs="+", default=["default", "100"],
                        help="numbers, or default: the model's own under --trainer=BIAO (CoNet 10, others 5); "
                             "default: default and 100")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3,
                        help="processes per configuration, interleaved; the fastest is kept (default 3)")
    parser.add_argument("--neumann_iterations", type=int, default=None, help="use the Neumann solver with K terms")
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--perceptron_history_length", type=int, default=None,
                        help="default: each model's own (CoNet 50, MiNet and DASL 20)")
    parser.add_argument("--no_pass", action="store_true", help="skip the perceptron pass comparison")
    parser.add_argument("--set", nargs="*", help="BIAO properties of the BIAO runs (and of the --selection "
                        "pipeline), key=value")
    parser.add_argument("--selection", action="store_true",
                        help="also time whole runs: Base against the learn-then-select pipeline (BIAO-select)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    base_config = {"data_path": args.data_path, "state": "ERROR", "show_progress": False, "checkpoint_dir": "saved"}
    biao = {} if args.neumann_iterations is None else {"hypergrad_method": "neumann",
                                                       "neumann_iterations": args.neumann_iterations}
    if args.perceptron_history_length:
        biao["perceptron_history_length"] = args.perceptron_history_length
    biao.update(parse_set(args.set))
    k = args.neumann_iterations or 0
    print(f"ml-1m-genres, fastest epoch of {args.repeats} processes x {args.epochs} epochs per run, K = {k}, "
          f"{os.cpu_count()} CPU cores; seconds per epoch, its spread over the processes (slowest / fastest), "
          f"and its parts")
    print(f"{'run':<26}{'s/epoch':>8}{'spread':>7}{'ratio':>7}{'theory':>7}" + "".join(f"{p:>11}" for p in PARTS)
          + f"{'peak RSS MB':>12}{'growth MB':>10}{'CUDA MB':>8}")
    for model in args.models:
        intervals = [default_interval(model, args.data_path) if i == "default" else int(i) for i in args.intervals]
        runs = [("", None, {})] + [(f" + BIAO interval {i}", "BIAO", {**biao, "interval": i}) for i in intervals]
        results = {name: [] for name, _, _ in runs}
        # interleaved (base, BIAO, ..., base, BIAO, ...): on this machine one process's epochs can be 50 % slower
        # than another's with the same work, so each configuration keeps its fastest process
        for _ in range(args.repeats):
            for name, trainer, extra in runs:
                spec = {"model": model, "trainer": trainer, "epochs": args.epochs, "config": {**base_config, **extra}}
                out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                                     text=True)
                if out.returncode:
                    sys.exit(f"{model}{name} failed:\n{out.stderr[-2000:]}")
                results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
        base = min(r["epoch_s"] for r in results[""])
        for name, trainer, extra in runs:
            r = min(results[name], key=lambda x: x["epoch_s"])
            spread = max(x["epoch_s"] for x in results[name]) / r["epoch_s"]
            theory = 1 + (k + 2) / extra["interval"] if trainer else 1.0
            cuda = f"{r['cuda_mb']:>8.0f}" if r["cuda_mb"] is not None else f"{'-':>8}"
            print(f"{model + name:<26}{r['epoch_s']:>8.2f}{spread:>7.2f}{r['epoch_s'] / base:>7.2f}{theory:>7.2f}"
                  + "".join(f"{r['parts'].get(p, 0.0):>11.3f}" for p in PARTS)
                  + f"{r['peak_mb']:>12.0f}{r['peak_mb'] - r['before_mb']:>10.0f}{cuda}", flush=True)
    print(f"device: {r['device']}; parts: loading = building batches except history gathering, perceptron = its "
          f"lower-step pass, model = the model's forward, backward and step (the rest of the epoch), upper = the "
          f"upper steps except their history gathering")
    if args.selection:
        time_pipelines(args.models, base_config, args.repeats, biao)
    if not args.no_pass:
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([sys.executable, os.path.join(here, "perceptron_pass.py"), "--data_path", args.data_path],
                       check=True)


def time_pipelines(models, base_config, repeats, select_config=None):
    """Wall time of whole runs, each in a fresh process with an empty run cache (a temporary working folder):
    Base (data loading, training with early stopping, evaluation) against learn-then-select (stage 1, the
    stable weights and every retrained candidate, with ``select_config``: ``--set``); the fastest of ``repeats``
    interleaved processes each."""
    import tempfile

    print("\nwhole runs (fresh process, empty run cache), fastest of the processes:")
    print(f"{'model':<8}{'Base s':>9}{'select s':>10}{'ratio':>7}")
    config = {**base_config, "data_path": os.path.abspath(base_config["data_path"])}
    for model in models:
        seconds = {None: [], "BIAO-select": []}
        for _ in range(repeats):
            for trainer in seconds:
                with tempfile.TemporaryDirectory() as folder:
                    extra = (select_config or {}) if trainer else {}
                    spec = {"whole": True, "model": model, "trainer": trainer,
                            "config": {**config, **extra, "checkpoint_dir": os.path.join(folder, "saved")}}
                    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                                         capture_output=True, text=True, cwd=folder)
                    if out.returncode:
                        sys.exit(f"{model} {trainer or 'Base'} failed:\n{out.stderr[-2000:]}")
                    seconds[trainer].append(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])
        base, select = min(seconds[None]), min(seconds["BIAO-select"])
        print(f"{model:<8}{base:>9.1f}{select:>10.1f}{select / base:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
