"""A model's training step on real data, this checkout against an earlier commit, measured in one run.

    python benchmarks/bench_step.py --against 7061474 [--model BiTGCF] [--dataset movies-books] [--trainer CrossDomain]
                                    [--steps 20] [--repeats 2]

Each side runs in its own process, one thread, on the batches of the dataset's training loader (its first
``--steps`` batches after two unmeasured ones): zero the gradients, the model's training loss, backward, the
optimiser's step, as RecBole's loop does (under ``--trainer BIAO`` the trainer's lower loss, which weights the
source rows, and every ``interval`` steps the upper step that the optimiser's step sets off). The earlier
commit's package is read from a temporary git worktree (removed afterwards); its properties files are its own,
the data files this checkout's. The sides alternate ``--repeats`` times; printed: each side's fastest mean seconds
per step and their ratio.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(code: str, model: str, dataset: str, trainer_name: str, steps: int) -> float:
    """Mean seconds per training step of ``model`` with the package found under ``code``."""
    sys.path.insert(0, code)
    import time

    import torch

    import recbole_biao
    from recbole_biao.quick_start import build_config, prepare_run

    if not recbole_biao.__file__.startswith(os.path.abspath(code)):  # another install shadows the package asked for
        sys.exit(f"bench_step: imported {recbole_biao.__file__}, not the package under {code}")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as saved:
        values = {"show_progress": False, "state": "ERROR", "checkpoint_dir": saved}
        _, (train, _, _), trainer = prepare_run(*build_config(model, dataset, None, values, trainer_name))
        trainer.model.train()
        if hasattr(trainer, "upper"):  # what BIAO's fit does first: the dev batches come from the training data
            trainer.upper.bind(train)
        loss_of = getattr(trainer, "lower_loss", None) or trainer.model.calculate_loss
        batches, seconds = iter(train), 0.0
        for step in range(steps + 2):
            batch = next(batches)
            start = time.perf_counter()
            trainer.optimizer.zero_grad()
            loss = loss_of(batch)
            sum(loss if isinstance(loss, tuple) else (loss,)).backward()
            trainer.optimizer.step()
            if step >= 2:  # the first steps allocate
                seconds += time.perf_counter() - start
    return seconds / steps


def side(code: str, args) -> float:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--measure", code, "--model", args.model,
                          "--dataset", args.dataset, "--trainer", args.trainer, "--steps", str(args.steps)],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if out.returncode:
        sys.exit(f"bench_step: the run with the package under {code} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", help="the earlier commit (any git revision)")
    parser.add_argument("--model", default="BiTGCF")
    parser.add_argument("--dataset", default="movies-books")
    parser.add_argument("--trainer", default="CrossDomain", help="CrossDomain or BIAO")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # the child: the package's folder
    args = parser.parse_args()
    if args.measure:
        print(json.dumps({"seconds": measure(args.measure, args.model, args.dataset, args.trainer, args.steps)}))
        return
    if not args.against:
        parser.error("--against: the commit to compare this checkout with")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    with tempfile.TemporaryDirectory() as folder:
        tree = os.path.join(folder, "tree")
        added = subprocess.run(["git", "worktree", "add", "--detach", tree, args.against], cwd=ROOT,
                               capture_output=True, text=True)
        if added.returncode:
            sys.exit(f"bench_step: --against {args.against}: {added.stderr.strip()}")
        try:
            best = {"this checkout": float("inf"), args.against: float("inf")}
            for _ in range(args.repeats):
                best["this checkout"] = min(best["this checkout"], side(ROOT, args))
                best[args.against] = min(best[args.against], side(tree, args))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, capture_output=True)
    new, old = best["this checkout"], best[args.against]
    print(f"{args.model} on {args.dataset} ({args.trainer}), seconds per training step, fastest of {args.repeats}: "
          f"this checkout ({head.stdout.strip()}) {new:.3f}, {args.against} {old:.3f}; {args.against} / this "
          f"checkout {old / new:.2f}x")


if __name__ == "__main__":
    main()
