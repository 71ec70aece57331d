"""Probe: does a first-order influence score find source rows whose removal beats a random removal of the same
size? Behind ``docs/results/<page>.md``.

The perceptron's stable weights rank real source rows no better than chance (docs/selection.md). This probe
ranks them without the perceptron: after a short Base training (``--epochs``), each source training interaction
``i`` gets its *alignment* ``a_i = g_T . grad l_i``, where ``g_T`` is the gradient of the mean target training
loss (the upper level's dev loss under reorder-and-reuse) and ``l_i`` the row's source loss. One gradient step
on row ``i`` changes the target training loss by about ``-lr a_i``: a row with ``a_i < 0`` pulls the model away
from the target (TracIn's score at one checkpoint, or an influence function with the Hessian taken as the
identity). It is BIAO's implicit hypergradient with the identity solver, taken with respect to one loss weight per
row instead of the perceptron: one double backward per batch gives every row's score.

Per seed the probe trains, all with the pipeline's candidate protocol (``select_histories``):

- **aligned** candidates: drop the rows with ``a_i < 0`` (``sign``), and the ``--fraction`` with the lowest
  ``a_i`` (``low``);
- **random** controls: as many rows dropped at random, ``--draws`` draws per candidate;
- Base (keep all) and Base-0 (drop all).

The page gives each candidate against its random drops and against Base, paired over seeds.

    python benchmarks/probe_alignment.py [--model CoNet] [--dataset movies-books] [--seeds 10] [--epochs 2]
                                         [--fraction 0.25] [--draws 2] [--workers 2]
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.results_page import mean_sd, write_page  # noqa: E402  (after the path insertion)
from recbole_biao.biao.hypergradient import implicit_hypergradient  # noqa: E402
from recbole_biao.biao.selection import interaction_rows, write_keep_file  # noqa: E402
from recbole_biao.data.dataloader import make_batch  # noqa: E402
from recbole_biao.experiments import commands  # noqa: E402
from recbole_biao.experiments.compare import (Row, RunCache, paired_p_value, run_rows,  # noqa: E402
                                              settings_fingerprint)
from recbole_biao.experiments.controls import item_count_rho, random_keep, seed_agreement, write_mask  # noqa: E402
from recbole_biao.experiments.parallel import make_pool, runner  # noqa: E402
from recbole_biao.quick_start import run_recbole_biao  # noqa: E402

SETTINGS = {"select_histories": True, "show_progress": False, "state": "WARNING"}
CHUNK = 2048


def _batches(data, split: str, rows: np.ndarray, history_length: int, device):
    from recbole.data.interaction import Interaction

    for begin in range(0, len(rows), CHUNK):
        yield Interaction(make_batch(data, split, rows[begin:begin + CHUNK], history_length)).to(device)


def target_gradient(model, data, history_length: int, device) -> list:
    """The gradient of the mean target training loss over every target training row (``None`` where a
    parameter has no gradient)."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    rows = np.arange(len(data.splits["train_target"]))
    for batch in _batches(data, "train_target", rows, history_length, device):
        grads = torch.autograd.grad(model.domain_losses(batch, "target").sum(), params, allow_unused=True)
        total = [t + g if g is not None else t for t, g in zip(total, grads)]
    return [t / len(rows) for t in total]


def alignments(model, data, g_target: list, history_length: int, device) -> np.ndarray:
    """``[interactions]``: each source training interaction's ``g_target . grad l_i``: minus BIAO's implicit
    hypergradient (``hypergrad_method: identity``) of a dev loss whose gradient is ``g_target`` (the linear
    ``g_target . theta``) with respect to per-row loss weights ``u`` at ``u = 1``."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = []
    for batch in _batches(data, "train_source", interaction_rows(data), history_length, device):
        u = torch.ones(len(batch), device=device, requires_grad=True)
        dev = sum((t * p).sum() for t, p in zip(g_target, params))
        (grad,) = implicit_hypergradient(dev, (u * model.domain_losses(batch, "source")).sum(), params, [u],
                                         method="identity")
        out.append(-grad.detach().double().cpu().numpy())
    return np.concatenate(out)


def score(model_name: str, dataset: str, values: dict, path: str) -> str:
    """Train Base with ``values`` (a short training) and write every source training interaction's alignment as
    a scores file (a keep file's columns: user, item, timestamp, weight = alignment, keep)."""
    kept = {}
    run_recbole_biao(model_name, dataset, None, values,
                     trainer_hook=lambda trainer, data: kept.update(trainer=trainer, data=data))
    trainer, data = kept["trainer"], kept["data"]
    model, device = trainer.model.eval(), trainer.config["device"]
    length = trainer.config["history_length"]
    a = alignments(model, data, target_gradient(model, data, length, device), length, device)
    return write_keep_file(path, data, a, np.ones(len(a), dtype=bool))


def main() -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="CoNet")
    parser.add_argument("--dataset", default="movies-books")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first_seed", type=int, default=2023)
    parser.add_argument("--epochs", type=int, default=2, help="Base epochs before scoring")
    parser.add_argument("--fraction", type=float, default=0.25, help="candidate 'low': this share dropped")
    parser.add_argument("--draws", type=int, default=2, help="random drops per candidate")
    parser.add_argument("--workers", type=int, default=None, help="the retrains in parallel on a local Ray")
    parser.add_argument("--page", default=None, help="docs/results/<page>.md")
    args = parser.parse_args()
    page = args.page or f"alignment-{args.dataset}-{args.model.lower()}"
    started, seeds = time.time(), list(range(args.first_seed, args.first_seed + args.seeds))
    folder = os.path.join("saved", "alignment")
    os.makedirs(folder, exist_ok=True)
    rows, plan, ranked = {seed: [] for seed in seeds}, [], {}
    for seed in seeds:
        stage = {**SETTINGS, "seed": seed, "train_epochs": [f"BOTH:{args.epochs}"]}
        # named after everything the scores depend on (settings, code, data): a stale file is never reused
        key = settings_fingerprint(args.model, None, args.dataset, None, stage)
        stem = os.path.join(folder, f"{args.model}-{args.dataset}-seed{seed}-{key}")
        if not os.path.isfile(stem + "-scores.csv"):
            score(args.model, args.dataset, stage, stem + "-scores.csv")
        scored = pd.read_csv(stem + "-scores.csv", dtype={"user": str, "item": str}, keep_default_na=False)
        a = scored["weight"].to_numpy()
        ranked[seed] = scored.set_index(["user", "item", "timestamp"])["weight"]
        order = np.argsort(a, kind="stable")
        masks = {"sign": a >= 0, "low": np.ones(len(a), dtype=bool)}
        masks["low"][order[:int(round(args.fraction * len(a)))]] = False
        settings = {**SETTINGS, "seed": seed}
        rows[seed] += [Row(f"{seed} keep all", args.model, None, settings),
                       Row(f"{seed} drop all", f"{args.model}-0", None, settings)]
        for name, keep in masks.items():
            n_drop = int((~keep).sum())
            files = {name: write_mask(scored, keep, f"{stem}-{name}.csv")}
            files.update({f"{name} random {d}": write_mask(scored, random_keep(len(a), n_drop, seed, d),
                                                           f"{stem}-random-{n_drop}-draw{d}.csv")
                          for d in range(args.draws)})
            rows[seed] += [Row(f"{seed} {label}", args.model, None, {**settings, "keep_file": path})
                           for label, path in files.items()]
            plan.append({"seed": seed, "candidate": name, "dropped": n_drop, "rows": len(a),
                         "rho": item_count_rho(a, scored["item"].to_numpy())})
    cache, pool = RunCache(os.path.join(commands.OUT_DIR, "cache")), make_pool(args.workers, None)
    results = {}
    for seed, mine in rows.items():
        got, failed = run_rows(mine, [seed], runner(False), cache, args.dataset, pool=pool)
        if failed:
            sys.exit(f"probe_alignment: {failed[0][0]} failed: {failed[0][2]}")
        results.update(got)
    auc = {label: runs[0]["auc"] for label, runs in results.items()}
    body = page_body(plan, auc, args) + ["", stability(ranked)]
    path = write_page(page, f"Source rows ranked by their alignment with the target gradient ({args.model}, "
                            f"{args.dataset}, {args.seeds} seeds)", body, time.time() - started)
    print("\n".join(body))
    print(f"written: {path}")


def stability(ranked: dict) -> str:
    """Whether the score is a property of the row or of the training (:func:`seed_agreement` over every two
    seeds); and of the user or the item, in case the harm belongs to whose or which source data."""
    pairs = seed_agreement(ranked)
    if not pairs:
        return ""
    means = {by: np.mean(seed_agreement(ranked, by)) for by in ("user", "item")}
    return (f"The same rows scored in two seeds (another initialisation, batch order and sampled negatives): "
            f"Spearman correlation {np.mean(pairs):+.3f} on average over {len(pairs)} pairs of seeds "
            f"(range {min(pairs):+.3f} to {max(pairs):+.3f}); the same users' mean score {means['user']:+.3f}, "
            f"the same items' {means['item']:+.3f}.")


def page_body(plan, auc, args) -> list:
    seeds = sorted({p["seed"] for p in plan})
    base = np.array([auc[f"{s} keep all"] for s in seeds])
    drop_all = np.array([auc[f"{s} drop all"] for s in seeds])
    lines = [f"Base {mean_sd(base)}; Base-0 {mean_sd(drop_all)} (Base-0 - Base {np.mean(drop_all - base):+.4f}, "
             f"p {paired_p_value(drop_all, base):.3g}). Scores after {args.epochs} epochs of Base; candidate "
             f"rows: source training interactions.", "",
             "| candidate | dropped: share (range) | AUC | random drop, same size | - random | p | - Base | p | "
             "rho (score, item count) |", "|---|---|---|---|---|---|---|---|---|"]
    for name in ("sign", "low"):
        mine = [p for p in plan if p["candidate"] == name]
        cand = np.array([auc[f"{p['seed']} {name}"] for p in mine])
        rand = np.array([np.mean([auc[f"{p['seed']} {name} random {d}"] for d in range(args.draws)]) for p in mine])
        shares = [p["dropped"] / p["rows"] for p in mine]
        lines.append(f"| {name} | {np.mean(shares):.2f} ({min(shares):.2f}-{max(shares):.2f}) | {mean_sd(cand)} | "
                     f"{mean_sd(rand)} | {np.mean(cand - rand):+.4f} | "
                     f"{paired_p_value(cand, rand):.3g} | {np.mean(cand - base):+.4f} | "
                     f"{paired_p_value(cand, base):.3g} | {min(p['rho'] for p in mine):+.2f} to "
                     f"{max(p['rho'] for p in mine):+.2f} |")
    lines += ["", "Per seed (test AUC; random: mean of the draws):", "",
              "| seed | Base | Base-0 | sign | its random | low | its random |", "|---|---|---|---|---|---|---|"]
    for s in seeds:
        cells = [f"{auc[f'{s} {name}']:.4f} | "
                 f"{np.mean([auc[f'{s} {name} random {d}'] for d in range(args.draws)]):.4f}"
                 for name in ("sign", "low")]
        lines.append(f"| {s} | {auc[f'{s} keep all']:.4f} | {auc[f'{s} drop all']:.4f} | {' | '.join(cells)} |")
    return lines


if __name__ == "__main__":
    main()
