"""Planted harm: does BIAO's perceptron down-weight source behaviours that are known to hurt the target?

    python benchmarks/bench_planted.py [--model CoNet,MiNet,DASL] [--seeds 5] [--rows ...] [--set key=value ...]
    python benchmarks/bench_planted.py --data ml-1m-genres --corruption users [--categories Action,Comedy] ...

Data (``--data``):

- ``generated`` (default): :mod:`dataset_converters.planted`, users whose taste is shared by both domains and
  a planted source category (``--planted_share`` of the source items) whose labels are random
  (``--corruption random``) or flipped (``flip``); the clean reference is the same data with correct labels,
  the oracle the corrupted data without the planted behaviours. One draw of the data (data seed 0) serves
  every seed, so the seeds vary the training only; ``--data_seeds``: each seed draws its own data;
- ``ml-1m-genres``: :mod:`dataset_converters.planted_ml1m`, the embedded split with a sparser target
  (``--target_keep``) and every source behaviour of ``--categories`` corrupted (``--corruption`` users, swap,
  labels, flip, userflip with ``--user_share``, flood with ``--copies``, or noise: ``--copies`` random-rating
  behaviours per real one of ``--user_share`` of the users, on ``--planted_items`` new items, or contrary: the
  same rows rated against the user's target taste from the target training rows (contrary_source: from their
  real source ratings; contrary_heldout: from half of the earlier target behaviours, taken out of the
  target), or bias: the same rows, one random rating (1 or 5) for all of a user's; the oracle of
  these is the clean data);
- ``movies-books``: :mod:`dataset_converters.planted_implicit`, the real implicit pair with spam positives of
  random users on new source items of a planted category (``--corruption spam``, ``--spam_share`` x the source
  rows on ``--planted_items`` items); the oracle is the real data.

Runs per backbone and seed (``--rows``): Base on the clean data, Base on the corrupted data, the oracle (Base on
the corrupted data without its corrupted behaviours: the reachable ceiling), soft BIAO on the corrupted data with
the default BIAO properties (plus ``--set``), its control (the same run with ``upper_learning_rate: 0``),
learn-then-select (trainer ``BIAO-select``) and its control (the same number of source behaviours dropped at
random). Printed per seed and on average: target test AUCs, each row's share of the reachable gap,
(row - Base corrupted) / (oracle - Base corrupted), paired t-tests (the oracle, soft BIAO and selection against
Base corrupted, soft BIAO against its control, selection against random dropping); for soft BIAO the mean weight
of corrupted / clean source behaviours at the end of training (normalised within random batches of
``train_batch_size``, times the batch size), their ratio and ESS; for selection its choice and, for its cutoff
candidate, the recall and precision of the corrupted behaviours among the dropped ones. It checks that the
corruption hurts Base by at least 0.01 AUC; otherwise the setting tests nothing and it says so.

``--from_pages A,B`` runs nothing: it summarises the per-seed lines of pages this script wrote before (for
example the same settings over seeds 2023-2027 and, with ``--first_seed 2028``, 2028-2032) as one table.
"""

import argparse
import functools
import os
import re
import sys
import time
from typing import List, Optional

import numpy as np
import pandas as pd
import torch
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from recbole_biao.compat import literal_config_values  # noqa: E402  (after the path insertion)
from recbole_biao.biao.diagnostics import effective_sample_size  # noqa: E402
from recbole_biao.biao.selection import KEEP_ALL  # noqa: E402
from dataset_converters.planted_ml1m import (BY_USER, CORRUPTIONS as ML1M_CORRUPTIONS, ON_PLANTED_ITEMS,  # noqa: E402
                                             PLANTED as ML1M_PLANTED, read_atomic, write)


# the rows' labels, as the per-seed lines print them (``--from_pages`` reads them back)
LABELS = {"base_clean": "Base clean", "base": "Base corrupted", "oracle": "Base oracle", "biao": "+BIAO corrupted",
          "control": "control (upper lr 0)", "select": "learn, then select", "random": "random drop (same size)",
          "single": "Base-S", "retrain": "retrained on learned"}
TITLE = "Planted harm: soft BIAO, learn-then-select and the reachable ceiling"


def printer(page: List[str]):
    """A function that prints a line and keeps it for the result page."""
    def emit(line):
        print(line, flush=True)
        page.append(line)
    return emit


class UpperObserver:
    """Observer of the upper level: per upper step, does the hypergradient push corrupted scores down, and what
    is the weight ratio of corrupted / clean behaviours in its fresh batches?"""

    def __init__(self, corrupted_items):
        self.corrupted = corrupted_items
        self.signs, self.ratios = [], []

    def __call__(self, record):
        items = np.concatenate([b["source_item_id"].numpy() for b in record["batches"]])
        grads = np.concatenate([b["score_grad"].numpy() for b in record["batches"]])
        weights = np.concatenate([b["weights"].numpy() for b in record["batches"]])
        bad = self.corrupted[items]
        if bad.any() and (~bad).any():  # gradient descent lowers the scores with the larger gradient
            self.signs.append(grads[bad].mean() > grads[~bad].mean())
            self.ratios.append((record["step"], weights[bad].mean() / weights[~bad].mean()))

    def ratio_until(self, step: int, last: int = 5) -> float:
        """Mean weight ratio over the ``last`` upper steps up to lower step ``step`` (the evaluated model's)."""
        before = [r for s, r in self.ratios if s <= step][-last:]
        return float(np.mean(before)) if before else 1.0


def run(model, yaml, values, trainer=None, corrupted_categories=(), start_perceptron=None):
    """Train one configuration; returns the test AUC and, for BIAO, the weight statistics (and the learned
    perceptron). ``start_perceptron``: a perceptron state to start from (with upper lr 0: to train a fresh
    model on weights learned before)."""
    from recbole_biao.quick_start import run_recbole_biao

    kept = {}

    def hook(trainer_obj, data):
        kept["trainer"], kept["data"] = trainer_obj, data
        if hasattr(trainer_obj, "upper"):
            names = data.tokens["source_category"]
            corrupted_categories_ids = np.isin(names, list(corrupted_categories))
            kept["corrupted_items"] = corrupted_categories_ids[data.item_category["source"]]
            kept["signs"] = UpperObserver(kept["corrupted_items"])
            if start_perceptron is not None:
                trainer_obj.upper.perceptron.load_state_dict(start_perceptron)
                trainer_obj.upper.initial.load_state_dict(start_perceptron)
            trainer_obj.upper.observer = kept["signs"]

    start = time.time()
    result = run_recbole_biao(model, None, [yaml], values, trainer, trainer_hook=hook)
    out = {"auc": result["test_result"]["auc"], "seconds": time.time() - start}
    if "selection" in result:
        out.update(selection_stats(result["selection"], yaml, corrupted_categories))
    if "signs" in kept:
        trainer_obj, data = kept["trainer"], kept["data"]
        rows = np.random.default_rng(0).permutation(len(data.splits["train_source"]))
        weights = trainer_obj.evaluate_weights(rows)
        bad = kept["corrupted_items"][data.splits["train_source"].item[rows]]
        signs = kept["signs"].signs
        out.update(corrupt=float(weights[bad].mean()), clean=float(weights[~bad].mean()),
                   ess=effective_sample_size(torch.from_numpy(weights)),
                   steps=trainer_obj.upper.stats["steps"], sign=float(np.mean(signs)) if signs else float("nan"))
        out["ratio"] = out["corrupt"] / out["clean"]
        out["perceptron"] = {k: v.detach().clone() for k, v in trainer_obj.upper.perceptron.state_dict().items()}
        epoch_steps = len(trainer_obj.train_data)
        best_step = (trainer_obj.best_epoch + 1) * epoch_steps if trainer_obj.best_epoch is not None else 0
        out["ratio_best"] = kept["signs"].ratio_until(best_step)
    return out


def selection_stats(info, yaml_path, corrupted_categories):
    """What a learn-then-select run dropped: its choice, the rows dropped and, for the cutoff candidate (chosen or
    not), the recall and precision of the corrupted behaviours among the dropped ones and its test AUC."""
    import yaml as pyyaml

    with open(yaml_path, encoding="utf-8") as f:
        config = pyyaml.safe_load(f)
    name = config["source_domain"]["dataset"]
    items, _ = read_atomic(os.path.join(config["data_path"], name, f"{name}.item"))
    corrupted = set(items["item_id"][items["category"].isin(list(corrupted_categories))])
    out = {"chosen": info["chosen"], "dropped": info["candidates"][info["chosen"]]["dropped"],
           # every candidate's guard p against keep all and valid AUC gain over it: what another select_level
           # would have chosen, read from the same runs
           "guard": {n: (c["p"], c["valid_auc"] - info["candidates"][KEEP_ALL]["valid_auc"])
                     for n, c in info["candidates"].items() if c["p"] is not None}}
    cutoffs = [n for n in info["keep_files"] if n != "random"]
    if cutoffs:
        keep = pd.read_csv(info["keep_files"][cutoffs[0]], dtype={"user": str, "item": str}, keep_default_na=False)
        bad, dropped = keep["item"].isin(corrupted).to_numpy(), keep["keep"].to_numpy() == 0
        out.update(cutoff_auc=info["candidates"][cutoffs[0]]["test_auc"], cutoff_dropped=int(dropped.sum()),
                   recall=float((bad & dropped).sum() / max(bad.sum(), 1)),
                   precision=float((bad & dropped).sum() / max(dropped.sum(), 1)))
    return out


def share(row: float, base: float, oracle: float) -> float:
    """The share of the reachable gap a row closes: (row - Base corrupted) / (oracle - Base corrupted)."""
    return (row - base) / (oracle - base) if oracle != base else float("nan")


def parse_set(items: Optional[List[str]]) -> dict:
    """``key=value`` items to properties, the values parsed as literals (never evaluated as code)."""
    values = {}
    for item in items or []:
        if "=" not in item:
            sys.exit(f"--set {item}: expected key=value")
        key, value = item.split("=", 1)
        values[key] = value
    return literal_config_values(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="CoNet,MiNet,DASL", help="backbones, comma-separated")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first_seed", type=int, default=2023, help="seeds first_seed .. first_seed + seeds - 1 "
                        "(more seeds for a page already written)")
    parser.add_argument("--data", choices=("generated", "ml-1m-genres", "movies-books"), default="generated")
    parser.add_argument("--corruption", default=None, help="generated: random (default) or flip; ml-1m-genres: "
                        "users (default), swap, labels, flip, userflip, flood, or on planted items noise, contrary, "
                        "contrary_source, contrary_heldout or bias; movies-books: spam")
    parser.add_argument("--users", type=int, default=2000, help="generated: number of users")
    parser.add_argument("--planted_share", type=float, default=0.6, help="generated: share of planted source items")
    parser.add_argument("--target_per_user", type=int, default=6, help="generated: target behaviours per user")
    parser.add_argument("--data_seeds", action="store_true",
                        help="generated: each seed draws its own data (default: one draw, data seed 0, for all)")
    parser.add_argument("--source_per_user", type=int, default=40, help="generated: source behaviours per user")
    parser.add_argument("--categories", default="Action,Comedy", help="ml-1m-genres: corrupted categories "
                        "(or all)")
    parser.add_argument("--target_keep", type=float, default=0.2)
    parser.add_argument("--user_share", type=float, default=0.5,
                        help="with --corruption userflip or one on planted items: share of users")
    parser.add_argument("--copies", type=int, default=1,
                        help="with --corruption flood or one on planted items: planted rows per behaviour")
    parser.add_argument("--spam_share", type=float, default=1.0, help="movies-books: spam rows per source row")
    parser.add_argument("--planted_items", type=int, default=2000,
                        help="movies-books (or a --corruption on planted items): planted source items")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the dataset's)")
    parser.add_argument("--data_path", default="dataset/", help="where ml-1m-genres is (converted if missing)")
    parser.add_argument("--out", default="dataset/planted", help="where the planted data are written")
    parser.add_argument("--set", nargs="*", help="BIAO properties for the BIAO and control runs, key=value")
    parser.add_argument("--trainer", default="BIAO", help="trainer of the BIAO and control runs (e.g. BIAO-paper)")
    parser.add_argument("--page", default=None, help="also write the output to docs/results/<page>.md")
    parser.add_argument("--all", nargs="*", help="properties for every run, key=value (e.g. learning_rate=0.005)")
    parser.add_argument("--rows", default="base_clean,base,oracle,biao,control,select,random",
                        help="which runs, comma-separated, of: single (Base-S, clean), base_clean, base, oracle "
                             "(Base without the planted behaviours), biao, control, select (learn, then select: "
                             "trainer BIAO-select), random (the same number of source behaviours dropped at "
                             "random), retrain (a fresh model on the perceptron the biao run learned, frozen; "
                             "after biao)")
    parser.add_argument("--from_pages", default=None, help="run nothing: summarise the per-seed lines of these "
                        "earlier pages (comma-separated paths) as one table")
    args = parser.parse_args()
    wanted = [r for r in args.rows.split(",") if r]
    unknown = [r for r in wanted if r not in LABELS]
    if unknown:
        sys.exit(f"--rows: unknown row {unknown[0]!r}; expected some of {', '.join(LABELS)}")
    if args.from_pages:
        summarise_pages(args, wanted)
        return

    if args.data == "generated":
        from dataset_converters import planted

        corruption = args.corruption or "random"

        @functools.lru_cache(maxsize=None)  # each draw written once
        def generated(seed):  # the clean, corrupted and oracle data of one draw, written under args.out
            folder = os.path.join(args.out, f"data{seed}") if args.data_seeds else args.out
            return {name: planted.write(folder, f"planted-{name}", drop, users=args.users, corruption=c,
                                        planted_share=args.planted_share, target_per_user=args.target_per_user,
                                        source_per_user=args.source_per_user, seed=seed)
                    for name, c, drop in (("clean", "none", False), ("corrupt", corruption, False),
                                          ("oracle", corruption, True))}

        yamls = None if args.data_seeds else generated(0)
        categories = [planted.PLANTED]
        description = (f"generated, {args.users} users; source labels of the category '{planted.PLANTED}' "
                       f"({100 * args.planted_share:.0f}% of the source items) {corruption}; "
                       + ("each seed draws its own data (`--data_seeds`)" if args.data_seeds else
                          "one draw (data seed 0) for every seed: the seeds vary the training only"))
        print(f"planted harm ({description}); models {args.model}", flush=True)
    elif args.data_seeds:
        sys.exit("--data_seeds: only with --data generated (the real data are one draw)")
    elif args.data == "movies-books":
        from dataset_converters import planted_implicit
        from recbole_biao.config import PROPERTIES_DIR

        if (args.corruption or "spam") != "spam":
            sys.exit(f"--corruption {args.corruption}: expected spam with --data movies-books")
        yamls, corrupted, source_rows, target_rows = planted_implicit.write(
            os.path.join(PROPERTIES_DIR, "dataset", "movies-books.yaml"), args.out, args.spam_share,
            args.planted_items)
        categories = [planted_implicit.PLANTED]
        description = (f"Movies -> Books; {corrupted:,} spam positives of random users on {args.planted_items:,} "
                       f"planted source items ({100 * corrupted / source_rows:.1f}% of {source_rows:,} source "
                       f"rows); target rows {target_rows:,}")
        print(f"planted harm: {description}; models {args.model}", flush=True)
    else:
        from dataset_converters import ml1m_genres
        from recbole_biao.quick_start import build_config

        corruption = args.corruption or "users"
        if corruption not in ML1M_CORRUPTIONS:
            sys.exit(f"--corruption {corruption}: expected one of {ML1M_CORRUPTIONS} with --data ml-1m-genres")
        _, config = build_config("CoNet", "ml-1m-genres", None, {"data_path": args.data_path})
        ml1m_genres.prepare(config)
        folders = {d: os.path.join(args.data_path, f"ml-1m-genres-{d}") for d in ("source", "target")}
        categories = [c.strip() for c in args.categories.split(",") if c.strip()]
        if categories == ["all"]:
            items, _ = read_atomic(os.path.join(folders["source"], "ml-1m-genres-source.item"))
            categories = sorted(set(items["category"]))
        yamls, corrupted, source_rows, target_rows = write(
            folders["source"], folders["target"], args.out, categories, corruption, args.target_keep, args.copies,
            user_share=args.user_share, planted_items=args.planted_items)
        whose = f" of {100 * args.user_share:.0f}% of the users" if corruption in BY_USER else ""
        if corruption in ON_PLANTED_ITEMS:
            rating = {"noise": "random", "contrary": "contrary", "contrary_source": "contrary (source taste)",
                      "contrary_heldout": "contrary (held-out target taste)",
                      "bias": "per-user constant"}[corruption]
            whose += f", {args.copies} {rating}-rating copies each on {args.planted_items:,} planted items"
        description = (f"ML-1M genre split; {corruption} on every source behaviour{whose} of {', '.join(categories)} "
                       f"({corrupted:,} of {source_rows:,} source rows, {100 * corrupted / source_rows:.1f}%); "
                       f"target rows kept {target_rows:,} (fraction {args.target_keep} of the earlier behaviours"
                       + ("; of those, a random half set aside to rate the planted rows" if corruption ==
                          "contrary_heldout" else "") + ")")
        if corruption in ON_PLANTED_ITEMS:
            categories = [ML1M_PLANTED]  # the corrupted rows are the ones on planted items
        print(f"planted harm: {description}; models {args.model}", flush=True)

    common = {"show_progress": False, "state": "ERROR", "checkpoint_dir": os.path.join(args.out, "saved"),
              **({"train_epochs": [f"BOTH:{args.epochs}"]} if args.epochs else {}), **parse_set(args.all)}
    biao = parse_set(args.set)
    # the data of a seed: its own draw with --data_seeds, else the one draw
    data_for = generated if args.data_seeds else (lambda seed: yamls)
    started = time.time()
    rows_text = "; ".join(f"{r}: {LABELS[r]}" for r in wanted)
    page = [f"Data: {description}.", "", f"Rows (`--rows {args.rows}`): {rows_text}.", "", "```"]

    emit = printer(page)
    for model_name in [m.strip() for m in args.model.split(",") if m.strip()]:
        results = {r: [] for r in wanted}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            specs = rows_of(data_for(seed), biao, args.trainer)
            line = [f"{model_name} seed {seed}:"]
            for r in wanted:
                label, yaml, values, trainer = specs[r]
                model = model_name + "-S" if r == "single" else model_name
                start = results["biao"][-1]["perceptron"] if r == "retrain" else None  # needs "biao" before it
                out = run(model, yaml, {**common, **values, "seed": seed}, trainer, categories, start)
                results[r].append(out)
                line.append(f"{label} {out['auc']:.4f}{details(out)} ({out['seconds']:.0f}s)")
            emit("  ".join(line))
        summarise(model_name, results, specs, wanted, args.seeds, time.time() - started, emit)
    if args.page:
        from benchmarks.results_page import write_page

        print("written:", write_page(args.page, TITLE, page + ["```"], time.time() - started))


def rows_of(yamls: dict, biao: dict, trainer: str) -> dict:
    """Each row's (label, data yaml, properties, trainer) on one draw of the data (``yamls``: clean, corrupt,
    oracle)."""
    return {"base_clean": (LABELS["base_clean"], yamls["clean"], {}, None),
             "base": (LABELS["base"], yamls["corrupt"], {}, None),
             "oracle": (LABELS["oracle"], yamls["oracle"], {}, None),
             "biao": (LABELS["biao"], yamls["corrupt"], biao, trainer),
             "control": (LABELS["control"], yamls["corrupt"], {**biao, "upper_learning_rate": 0.0}, trainer),
             "select": (LABELS["select"], yamls["corrupt"], biao, "BIAO-select"),
             "random": (LABELS["random"], yamls["corrupt"], {**biao, "select_random": True}, "BIAO-select"),
             "single": (LABELS["single"], yamls["clean"], {}, None),
             "retrain": (LABELS["retrain"], yamls["corrupt"], {**biao, "upper_learning_rate": 0.0}, trainer)}


def details(out):
    """A run's weight or selection statistics, for its line."""
    if "ratio" in out:
        return (f" [w corrupt {out['corrupt']:.3f} / clean {out['clean']:.3f} = {out['ratio']:.3f} (at the evaluated "
                f"epoch {out['ratio_best']:.3f}), ESS {out['ess']:.3f}, {out['steps']} upper steps, "
                f"sign {out['sign']:.2f}]")
    if "chosen" in out:
        text = f" [chose '{out['chosen']}', dropped {out['dropped']}"
        if "recall" in out:
            text += (f"; cutoff: {out['cutoff_dropped']} dropped, recall {out['recall']:.3f}, precision "
                     f"{out['precision']:.3f}, test AUC {out['cutoff_auc']:.4f}")
        text += "; guard p (valid gain): " + ", ".join(f"{n} {p:.3g} ({gain:+.4f})" for n, (p, gain) in
                                                       out.get("guard", {}).items())
        return text + "]"
    return ""


def summarise(model, results, specs, wanted, seeds, seconds, out=print):
    """Means, shares of the reachable gap and paired t-tests of one backbone's rows, one line at a time to ``out``."""
    out(f"\n{model}: mean over {seeds} seeds" + ("" if seconds is None else f" ({seconds:.0f}s since the start)") + ":")
    auc = {r: np.array([o["auc"] for o in results[r]]) for r in wanted}
    base, oracle = auc.get("base"), auc.get("oracle")
    for r in wanted:
        text = f"  {specs[r][0]:<24} AUC {auc[r].mean():.4f}"
        if base is not None and oracle is not None and r not in ("base_clean", "single"):
            text += f"  share of the reachable gap {share(auc[r].mean(), base.mean(), oracle.mean()):+.2f}"
        first = results[r][0]
        if "ratio" in first:
            text += (f"  weight corrupt/clean {np.mean([o['ratio'] for o in results[r]]):.3f} "
                     f"(evaluated epoch {np.mean([o['ratio_best'] for o in results[r]]):.3f})  "
                     f"ESS {np.mean([o['ess'] for o in results[r]]):.3f}")
        if "chosen" in first:
            chosen = [o["chosen"] for o in results[r]]
            text += f"  chose {', '.join(f'{c} x{chosen.count(c)}' for c in dict.fromkeys(chosen))}"
            cut = [o for o in results[r] if "recall" in o]  # a cutoff that drops nothing is no candidate
            if cut:
                text += (f"; cutoff in {len(cut)} of {len(results[r])} seeds: recall "
                         f"{np.mean([o['recall'] for o in cut]):.3f}, precision "
                         f"{np.mean([o['precision'] for o in cut]):.3f}, test AUC "
                         f"{np.mean([o['cutoff_auc'] for o in cut]):.4f}")
        out(text)
    if "base_clean" in auc and base is not None:
        harm = auc["base_clean"].mean() - base.mean()
        out(f"  harm of the corruption to Base: {harm:+.4f} AUC"
              + ("" if harm >= 0.01 else "  (< 0.01: the corruption barely hurts Base; this setting tests nothing)"))
    if "oracle" in auc and base is not None and auc["oracle"].mean() <= base.mean():
        out("  the oracle does not beat Base corrupted: the corrupted rows are worth more than none, so there is "
            "no gap for weighting or selection to close; this setting tests nothing")
    pairs = [("oracle", "base"), ("biao", "base"), ("biao", "control"), ("select", "base"), ("select", "random"),
             ("random", "base")]
    for a, b in pairs:
        if a in auc and b in auc and seeds >= 2:
            p = stats.ttest_rel(auc[a], auc[b]).pvalue
            out(f"  {specs[a][0]} - {specs[b][0]}: {np.mean(auc[a] - auc[b]):+.4f} AUC (paired t-test p = {p:.3g})")


def rows_from_pages(paths: List[str], model: str, wanted: List[str]):
    """``(seeds, {row: [result]})`` from the per-seed lines ``<model> seed <s>: ...`` of earlier pages: each row's
    AUC and, for the selection rows, their choice and cutoff statistics (what :func:`summarise` reads)."""
    seeds, results = [], {r: [] for r in wanted}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                lines = [(n, line) for n, line in enumerate(f, 1) if line.startswith(f"{model} seed ")]
        except OSError as e:
            sys.exit(f"--from_pages {path}: cannot read it ({e.strerror})")
        for n, line in lines:
            seed = int(line.split()[2].rstrip(":"))
            if seed in seeds:
                sys.exit(f"{path}, line {n}: {model} seed {seed} is on an earlier page too; expected each seed once")
            seeds.append(seed)
            for r in wanted:
                found = re.search(re.escape(LABELS[r]) + r" ([0-9.]+)(?: \[([^\]]*)\])?", line)
                if found is None:
                    sys.exit(f"{path}, line {n}: no row {LABELS[r]!r}; expected the rows of --rows {','.join(wanted)}")
                out = {"auc": float(found.group(1))}
                chosen = re.search(r"chose '([^']*)'", found.group(2) or "")
                if chosen:
                    out["chosen"] = chosen.group(1)
                    cut = re.search(r"recall ([0-9.]+), precision ([0-9.]+), test AUC ([0-9.]+)", found.group(2))
                    if cut:
                        out.update(recall=float(cut.group(1)), precision=float(cut.group(2)),
                                   cutoff_auc=float(cut.group(3)))
                results[r].append(out)
    if not seeds:
        sys.exit(f"--from_pages: no line '{model} seed ...' on {', '.join(paths)}")
    return seeds, results


def summarise_pages(args, wanted: List[str]) -> None:
    """``--from_pages``: one summary per backbone over the seeds of the pages."""
    paths = [p.strip() for p in args.from_pages.split(",") if p.strip()]
    page = [f"Summarised from {', '.join(f'`{os.path.relpath(p)}`' for p in paths)} (their per-seed lines; "
            "nothing run).", "", "```"]

    emit = printer(page)
    specs = {r: (LABELS[r],) for r in wanted}
    for model_name in [m.strip() for m in args.model.split(",") if m.strip()]:
        seeds, results = rows_from_pages(paths, model_name, wanted)
        emit(f"{model_name}: seeds {', '.join(map(str, seeds))}")
        summarise(model_name, results, specs, wanted, len(seeds), None, emit)
    if args.page:
        from benchmarks.results_page import write_page

        print("written:", write_page(args.page, TITLE + " (summary over pages)", page + ["```"], 0.0))


if __name__ == "__main__":
    main()
