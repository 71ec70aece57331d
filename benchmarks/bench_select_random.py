"""Does learn-then-select's ranking beat chance at the same size, in every seed? Behind
``docs/results/<page>.md``.

``--compare --selection`` sets the chosen candidate beside one random drop of the same size; where the guard keeps
or drops all, the two are the same run, so over a few seeds that pair rests on the seeds where a cutoff was chosen.
This script asks the question of every seed: for each cutoff candidate the pipeline trained (chosen or not), its
test AUC against

- **random**: the same number of source interactions dropped at random, ``--draws`` draws (draw 0 is the
  pipeline's own control, so it is reused where that candidate was chosen);
- **per user**: each user loses as many source interactions as the candidate took from them, drawn at random
  within the user (on a held-back Amazon pair the learned weights rose with a user's source count, so a cutoff
  could drop light users' rows first): if this control does as well as the candidate, what the ranking found
  is *whose* source data to drop, not *which* behaviours;
- **rare items**: the interactions of the source items with the fewest source training interactions dropped
  first (ties at random): on Movies -> Books the stable weights follow the item's source count (Spearman
  |rho| about 0.7), in a direction that changes with the seed, so a cutoff can be a popularity filter.

And, beside the controls of the ranking, a control of the guard's choice itself:

- **reseeded**: Base again on the same data with another ``train_seed`` (``--reseeds`` runs: another
  initialisation and batch order, the same split and sampled negatives): how far two trainings of one
  configuration differ, and what choosing between them on the valid set gains with no change of data at all.

A control run of one size answers "is the ranking better than chance", but not "is the *pipeline* better than
chance": the pipeline also chooses, on the valid set, between keeping all, its cutoff and dropping all, and
where a run that leads on valid also leads on test (the page measures how closely), that choice gains from any
candidate. So the page also replays the pipeline's guard with each control in place of the learned cutoff (the
same valid predictions, level and bootstrap seed; no training): the learned pipeline against pipelines whose
ranking is random, per user or by item count, against the guard between keeping and dropping all alone, and
against the guard offered a reseeded Base in the cutoff's place (with and without dropping all): a pipeline
that does not beat these gains from choosing among trainings, not from choosing data.

    python benchmarks/bench_select_random.py [--model CoNet] [--dataset movies-books] [--seeds 10] [--draws 2]
                                             [--reseeds 2] [--workers 2] [--page select-random-movies-books-conet]

``--from_pages A,B,...`` runs nothing: it pools the two per-seed tables of pages this script wrote and gives
the same paired tests over all their candidates, then per page (``--page`` names the summary page).

The pipelines and every retrain go through the pipeline's caches (stage 1's scores file, ``--compare``'s run
cache): what ``run_recbole_biao.py --model=M --dataset=D --compare --selection --select_histories=True
--select_level=0.3`` trained with the same settings and code is read, not trained again, and an interrupted call
resumes.
"""

import argparse
import os
import re
import sys
import time
from typing import List, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.results_page import mean_sd, write_page  # noqa: E402  (after the path insertion)
from recbole_biao.biao.selection import DROP_ALL, KEEP_ALL, choose, valid_predictions  # noqa: E402
from recbole_biao.experiments import commands  # noqa: E402
from recbole_biao.experiments.controls import (item_count_rho, per_user_keep, random_keep,  # noqa: E402
                                               rare_items_keep, write_mask)
from recbole_biao.experiments.compare import SELECT, Row, RunCache, paired_p_value, run_rows  # noqa: E402
from recbole_biao.experiments.parallel import make_pool, runner  # noqa: E402
from recbole_biao.quick_start import build_config  # noqa: E402

# the settings of the comparison whose pipelines are read (the BIAO-select defaults, spelled out as its command did)
SETTINGS = {"select_histories": True, "select_level": 0.3}
# the columns of the page's two per-seed tables: each cutoff candidate's run and its controls, then the guard
# replayed with each of them in the cutoff's place ("no cutoff": keep all against drop all alone; "reseed": a
# reseeded Base in the cutoff's place; "reseed only": the guard between two trainings of Base)
RANKING_COLUMNS = ("candidate", "random", "per user", "rare items", "keep all", "reseeded")
GUARD_ARMS = ("candidate", "random", "per user", "rare items", "no cutoff", "reseed", "reseed only")
RANKING_PAIRS = (("candidate", "random"), ("candidate", "per user"), ("candidate", "rare items"),
                 ("per user", "random"), ("rare items", "random"), ("candidate", "keep all"))
GUARD_PAIRS = (*(("candidate", b) for b in (*GUARD_ARMS[1:], KEEP_ALL)), ("no cutoff", KEEP_ALL),
               ("reseed only", KEEP_ALL), ("no cutoff", "reseed only"))
# the header cells of the two tables (written by page_body and replayed_guard, read back by rows_from_page)
RANKING_HEADER = ("seed", "candidate", "chosen", "dropped", "rho (weight, item count)", *RANKING_COLUMNS)
GUARD_HEADER = ("seed", *(f"{arm} pipeline: chose, test AUC" for arm in GUARD_ARMS))


def pipeline_name(arm: str) -> str:
    return "keep all (Base)" if arm == KEEP_ALL else f"{arm} pipeline"


def paired_line(a: str, b: str, first, second) -> str:
    """``- a - b: mean difference (paired t-test p; above in, below in of n)``, a line of the page."""
    diff = np.asarray(first, dtype=float) - np.asarray(second, dtype=float)
    return (f"- {a} - {b}: {diff.mean():+.4f} AUC (paired t-test p = {paired_p_value(first, second):.3g}; "
            f"above in {int((diff > 0).sum())}, below in {int((diff < 0).sum())} of {len(diff)})")


def main() -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="CoNet")
    parser.add_argument("--dataset", default="movies-books")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--draws", type=int, default=2, help="random drops of the same size per candidate")
    parser.add_argument("--reseeds", type=int, default=2, help="Base runs per seed with another train_seed")
    parser.add_argument("--workers", type=int, default=None,
                        help="the pipelines and the controls' runs in parallel on a local Ray")
    parser.add_argument("--page", default=None, help="docs/results/<page>.md")
    parser.add_argument("--from_pages", default=None,
                        help="run nothing: pool the per-seed tables of these pages (comma-separated paths)")
    args = parser.parse_args()
    if args.from_pages:
        return pool_pages([p.strip() for p in args.from_pages.split(",") if p.strip()], args.page)
    page = args.page or f"select-random-{args.dataset}-{args.model.lower()}"
    started, seeds = time.time(), list(range(2023, 2023 + args.seeds))
    cache = RunCache(os.path.join(commands.OUT_DIR, "cache"))
    pool = make_pool(args.workers, None)
    records, controls = [], {seed: [] for seed in seeds}
    pipeline = Row(SELECT, args.model, "BIAO-select")
    if pool is not None:  # the pipelines first, side by side; the loop below then reads them from their caches
        run_rows([pipeline], seeds, runner(False), cache, args.dataset, None, SETTINGS, progress=False, pool=pool)
    for seed in seeds:
        # the pipeline as --compare --selection runs it: stage 1 and the candidates come from its caches
        spec = pipeline.spec(seed, args.dataset, {}, SETTINGS)
        try:
            info = runner(False)(spec)["selection"]
        except Exception as e:  # noqa: BLE001  (one line, as for a failed control below)
            sys.exit(f"bench_select_random: the pipeline of seed {seed} failed: {type(e).__name__}: {e}")
        stem = info["scores_file"][: -len("-scores.csv")]
        scored = pd.read_csv(info["scores_file"], dtype={"user": str, "item": str}, keep_default_na=False)
        selected = {**SETTINGS, "seed": seed, "show_progress": False, "state": "WARNING"}  # as the pipeline's rows
        # another training of keep all on the same data (train_seed: not a seed of the study, so no overlap)
        reseeded = {f"reseed {k}": Row(f"{seed} reseed {k}", args.model, None,
                                       {**selected, "train_seed": seed + 1_000_000 * k})
                    for k in range(1, args.reseeds + 1)}
        controls[seed].extend(reseeded.values())
        for name, candidate in info["candidates"].items():
            if name in (KEEP_ALL, DROP_ALL):
                continue
            n_drop = candidate["dropped"]
            kept = pd.read_csv(info["keep_files"][name], usecols=["keep"])["keep"].to_numpy().astype(bool)
            files = {f"random {d}": write_mask(scored, random_keep(len(scored), n_drop, seed, d),
                                                f"{stem}-random-{n_drop}.csv" if d == 0 else
                                                f"{stem}-random-{n_drop}-draw{d}.csv") for d in range(args.draws)}
            files["per user"] = write_mask(scored, per_user_keep(scored["user"].to_numpy(), kept, seed),
                                           f"{stem}-peruser-{n_drop}.csv")
            files["rare items"] = write_mask(scored, rare_items_keep(scored["item"].to_numpy(), n_drop, seed),
                                             f"{stem}-rare-{n_drop}.csv")
            rows = {label: Row(f"{seed} {name} {label}", args.model, None, {**selected, "keep_file": path})
                    for label, path in files.items()}
            records.append({"seed": seed, "candidate": name, "chosen": info["chosen"], "dropped": n_drop,
                            "rows": len(scored), "auc": candidate["test_auc"],
                            "base": info["candidates"][KEEP_ALL]["test_auc"],
                            "reseeds": {k: row.label for k, row in reseeded.items()},
                            "rho": item_count_rho(scored["weight"].to_numpy(), scored["item"].to_numpy()),
                            "labels": {k: row.label for k, row in rows.items()},
                            "guard_rows": {**rows, **reseeded, KEEP_ALL: Row(KEEP_ALL, args.model, None, selected),
                                           DROP_ALL: Row(DROP_ALL, f"{args.model}-0", None, selected),
                                           "candidate": Row(name, args.model, None,
                                                            {**selected, "keep_file": info["keep_files"][name]})}})
            controls[seed].extend(rows.values())
    results, failures = {}, []
    for seed, mine in controls.items():  # (a control is trained with its own seed only)
        got, failed = run_rows(mine, [seed], runner(False), cache, args.dataset, pool=pool)
        results.update(got)
        failures.extend(failed)
    if failures:
        sys.exit(f"bench_select_random: {failures[0][0]} failed: {failures[0][2]}")
    guard = build_config(args.model, args.dataset, None, SETTINGS, "BIAO-select")[1]
    body = page_body(records, results, args) + ["", *replayed_guard(records, guard, cache, args.dataset)]
    path = write_page(page, f"Learn-then-select's cutoffs against random drops of the same size ({args.model}, "
                            f"{args.dataset}, {args.seeds} seeds)", body, time.time() - started)
    print("\n".join(body))
    print(f"written: {path}")


def replayed_guard(records, config, cache, dataset: str) -> list:
    """The pipeline's choice between keep all, one ranking's cutoff and drop all, replayed per seed with the
    learned cutoff and with each control of its size in its place: the test AUC of what each guard picks. One
    cutoff is offered at a time (the default ``select_cutoffs: [gap]`` has one); a seed whose pipeline chose
    otherwise than the replay is marked in the table."""
    level, rounds = config["select_level"], config["select_bootstrap"]
    # "no cutoff": the guard between keep all and drop all alone (Base or Base-0, chosen on valid; no stage 1)
    # "reseed": a reseeded Base offered in the cutoff's place; "reseed only": the guard between two trainings of Base
    arms = GUARD_ARMS
    picked, table, leads = {arm: [] for arm in (*arms, KEEP_ALL)}, [], []
    for r in records:
        seed = r["seed"]
        # every run here is in the cache by now: its entry gives the valid and test AUC and the checkpoint
        entries = {k: cache.entry(row.spec(seed, dataset, {}, None)) for k, row in r["guard_rows"].items()}
        valid = {k: e["valid"]["auc"] for k, e in entries.items()}
        tests = {k: e["result"]["auc"] for k, e in entries.items()}
        draws = [k for k in entries if k.startswith("random ")]
        reseeds = [k for k in entries if k.startswith("reseed ")]
        leads.append((valid["candidate"] - np.mean([valid[k] for k in draws]),
                      tests["candidate"] - np.mean([tests[k] for k in draws])))
        fixed = {k: valid_predictions(entries[k]["run"]) for k in (KEEP_ALL, DROP_ALL)}
        choices = {}
        for arm in arms:
            choices[arm] = []
            options = {"random": draws, "reseed": reseeds, "reseed only": reseeds}.get(
                arm, [arm] if arm in entries else [None])
            always = {KEEP_ALL: fixed[KEEP_ALL]} if arm == "reseed only" else fixed
            for option in options:
                offered = {option: valid_predictions(entries[option]["run"])} if option else {}
                chosen, _ = choose({**always, **offered}, level, rounds, seed)
                what = chosen if chosen in (KEEP_ALL, DROP_ALL) else "reseed" if chosen in reseeds else "cutoff"
                choices[arm].append((what, tests[chosen]))
            picked[arm].append(float(np.mean([t for _, t in choices[arm]])))  # each random draw its own pipeline
        picked[KEEP_ALL].append(tests[KEEP_ALL])
        chose = "cutoff" if r["chosen"] == r["candidate"] else r["chosen"]
        # the replay must reproduce the pipeline's own choice, or the comparison is not of the pipeline
        table.append(f"| {seed} | " + " | ".join(" / ".join(f"{c} {t:.4f}" for c, t in choices[arm]) for arm in arms)
                     + ("" if chose == choices["candidate"][0][0] else f" (the pipeline itself chose {chose})")
                     + " |")

    def line(a, b):
        return paired_line(pipeline_name(a), pipeline_name(b), picked[a], picked[b])

    means = ", ".join(f"{arm} {mean_sd(picked[arm])}" for arm in arms)
    lead = np.asarray(leads)
    return ["## The guard replayed with each control in place of the learned cutoff", "",
            f"Does a run that leads on valid lead on test? The cutoff's valid AUC minus the mean of its random "
            f"drops', against the same on test: Pearson r = {np.corrcoef(lead[:, 0], lead[:, 1])[0, 1]:.2f} over "
            f"{len(lead)} candidates (near 1: a guard choosing on valid gains from whatever it is offered).", "",
            f"Each seed's choice between keep all, one cutoff and drop all (one-sided bootstrap p < {level} over "
            f"the valid users, {rounds} resamples, the pipeline's seed), with the learned cutoff (candidate) or a "
            f"control of its size in its place, or no cutoff at all; target test AUC of the chosen run, mean (sd) "
            f"over seeds: {means}. Reseed: each reseeded Base its own pipeline, as each random draw.", "",
            *(line(a, b) for a, b in GUARD_PAIRS), "",
            "| " + " | ".join(GUARD_HEADER) + " |",
            "|---|" + "---|" * len(arms), *table]


def page_body(records, results, args) -> list:
    if not records:
        return ["No seed trained a cutoff candidate (every cutoff kept or dropped all): nothing to compare."]
    columns = RANKING_COLUMNS
    table = ["| " + " | ".join(RANKING_HEADER) + " |", "|" + "---|" * len(RANKING_HEADER)]
    aucs, spreads = {name: [] for name in columns}, []
    for r in records:
        got = {short: results[label][0]["auc"] for short, label in r["labels"].items()}
        draws = [v for k, v in got.items() if k.startswith("random")]
        again = [results[label][0]["auc"] for label in r["reseeds"].values()]
        spreads.append(float(np.std([r["base"], *again], ddof=1)) if again else float("nan"))
        row = {"candidate": r["auc"], "random": float(np.mean(draws)), "per user": got["per user"],
               "rare items": got["rare items"], "keep all": r["base"],
               "reseeded": float(np.mean(again)) if again else float("nan")}
        for name in columns:
            aucs[name].append(row[name])
        each = {"random": draws, "reseeded": again}  # the runs a mean is of, in brackets
        cells = [f"{row[name]:.4f}" + (" (" + ", ".join(f"{v:.4f}" for v in each[name]) + ")" if each.get(name)
                                       else "") for name in columns]
        table.append(f"| {r['seed']} | {r['candidate']} | {'yes' if r['chosen'] == r['candidate'] else 'no'} | "
                     f"{r['dropped']:,} of {r['rows']:,} | {r['rho']:+.2f} | " + " | ".join(cells) + " |")

    def line(a, b):
        return paired_line(a, b, aucs[a], aucs[b])

    means = ", ".join(f"{name} {mean_sd(aucs[name])}" for name in columns)
    return [f"{len(records)} cutoff candidates over {args.seeds} seeds; target test AUC, mean (sd) over them: "
            f"{means}.", "",
            *(line(a, b) for a, b in RANKING_PAIRS), "",
            f"- Base trained again on the same data (keep all and {args.reseeds} reseeded runs per seed): test AUC "
            f"sd within a seed {np.nanmean(spreads):.4f} (mean over seeds), against "
            f"{np.std(aucs['keep all'], ddof=1):.4f} across seeds' keep all runs", "",
            *table, "",
            f"reseeded: the mean of {args.reseeds} Base runs with another train_seed (each in brackets). "
            f"random: the mean of {args.draws} draws (each in brackets; the first is the pipeline's own control, "
            f"`select_random`). rho: Spearman correlation of the stable weights with the source item's number of "
            f"source training interactions. Keep files under `saved/selection/` (`*-random-*`, `*-peruser-*`, "
            f"`*-rare-*`)."]


AUC = re.compile(r"\b[01]\.\d{4}\b")  # a test AUC as the tables print it (rho and row counts do not match)
REPLAYED = "## The guard replayed"


def rows_from_page(path: str) -> List[dict]:
    """Each cutoff candidate of a page this script wrote: ``{"seed", "ranking": {column: AUC}, "guard": {arm:
    AUC}}`` from its two per-seed tables (a cell with several runs, such as the random draws, gives their mean)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = list(enumerate(f, 1))
    except OSError as e:
        sys.exit(f"--from_pages {path}: cannot read it ({e.strerror})")
    split = next((i for i, (_, line) in enumerate(lines) if line.startswith(REPLAYED)), None)
    if split is None:
        sys.exit(f"--from_pages {path}: no section '{REPLAYED} ...'; expected a page of bench_select_random.py")
    tables = []
    for part, header, keys, where in ((lines[:split], RANKING_HEADER, RANKING_COLUMNS, "before"),
                                      (lines[split:], GUARD_HEADER, GUARD_ARMS, "after")):
        skip = len(header) - len(keys)  # the leading cells: seed, and the candidate's description
        if not any(cells(line) == list(header) for _, line in part):
            sys.exit(f"--from_pages {path}: no table '| seed | ...' with the columns {', '.join(header[skip:])} "
                     f"{where} '{REPLAYED}'")
        rows = []
        for n, line in part:
            row = cells(line)
            if not line.startswith("| ") or not row[0].isdigit():
                continue
            values = [AUC.findall(c) for c in row[skip:]]
            if len(values) != len(keys) or not all(values):
                sys.exit(f"{path}, line {n}: expected a seed and {len(keys)} AUC cells, got {line.strip()!r}")
            rows.append((n, int(row[0]), {k: float(np.mean([float(v) for v in got])) for k, got in zip(keys, values)}))
        tables.append(rows)
    if len(tables[0]) != len(tables[1]):
        sys.exit(f"--from_pages {path}: {len(tables[0])} candidates in the first table, {len(tables[1])} in "
                 f"'{REPLAYED}'; expected one replay per candidate")
    out = []
    for (_, seed, ranking), (n, replay_seed, guard) in zip(*tables):
        if seed != replay_seed:
            sys.exit(f"{path}, line {n}: seed {replay_seed} where the first table has {seed}; expected the same order")
        out.append({"seed": seed, "ranking": ranking, "guard": guard})
    if not out:
        sys.exit(f"--from_pages {path}: no candidate rows; expected a page of bench_select_random.py")
    return out


def cells(line: str) -> List[str]:
    """The cells of a markdown table row."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def pool_pages(paths: List[str], page: Optional[str]) -> None:
    """``--from_pages``: the paired tests of the pages' tables over all their candidates together, and per page."""
    if len(set(paths)) != len(paths):
        sys.exit("--from_pages: a page is given twice; expected each page once (its seeds would count twice)")
    pooled = {path: rows_from_page(path) for path in paths}
    everything = [row for rows in pooled.values() for row in rows]

    def lines(rows, ranking_pairs, guard_pairs) -> List[str]:
        ranking = {k: [r["ranking"][k] for r in rows] for k in RANKING_COLUMNS}
        guard = {k: [r["guard"][k] for r in rows] for k in GUARD_ARMS}
        guard[KEEP_ALL] = ranking["keep all"]  # the guard's "keep all" is the candidate's own keep all run
        return ([paired_line(a, b, ranking[a], ranking[b]) for a, b in ranking_pairs]
                + [paired_line(pipeline_name(a), pipeline_name(b), guard[a], guard[b]) for a, b in guard_pairs])

    body = [f"Pooled from {', '.join(f'`{os.path.relpath(p)}`' for p in paths)} (their per-seed tables; nothing "
            f"run): {len(everything)} cutoff candidates. Each candidate is one pair of runs per comparison, so the "
            f"paired t-tests below treat the candidates of all pages alike; two pages of the same behaviours "
            f"(other item IDs) are different trainings of correlated data, not independent pairs.", "",
            "## All pages together", "", "Target test AUC of each cutoff candidate against its controls:", "",
            *lines(everything, (*RANKING_PAIRS, ("random", "keep all"), ("per user", "keep all")), ()), "",
            "The pipeline's guard replayed with each control in the learned cutoff's place:", "",
            *lines(everything, (), GUARD_PAIRS)]
    for path, rows in pooled.items():
        body += ["", f"## {os.path.basename(path)} ({len(rows)} candidates)", "",
                 *lines(rows, (("candidate", "random"),), (("candidate", "random"), ("candidate", KEEP_ALL)))]
    print("\n".join(body))
    if page:
        print("written:", write_page(page, "Learn-then-select's cutoffs against random drops, pooled over pages",
                                     body, 0.0))


if __name__ == "__main__":
    main()
