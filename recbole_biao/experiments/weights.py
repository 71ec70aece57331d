"""Analysis of the learned source weights of a BIAO run (the CSV of ``weight_log``): mean weight per source
category (paper Figure 3), mean weight against the user's source-minus-target behaviour count (Figure 4),
and a report of the highest- and lowest-weighted behaviours with the users' recent histories (Appendix B).

    python -m recbole_biao.experiments.weights saved/MiNet-...-weights.csv [--out DIR] [--top 10]
"""

import argparse
import os
from typing import List, Optional, Tuple

import numpy as np
import pandas as pd
import torch

from recbole_biao.errors import DataError
from recbole_biao.experiments.plots import bar_chart, line_chart
from recbole_biao.biao.diagnostics import MOVED_BELOW, score_correlation
from recbole_biao.files import atomic_path

__all__ = ["load_weights", "learned_statement", "analyse", "analysis_lines"]

COLUMNS = ("user", "item", "category", "user_source_behaviours", "user_target_behaviours", "weight")


def load_weights(path: str) -> pd.DataFrame:
    if not os.path.isfile(path):
        raise DataError(f"{path}: weight CSV not found (write one with --weight_log=True)")
    try:
        df = pd.read_csv(path, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a weight CSV of a BIAO run ({str(e).splitlines()[0]})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}:1: missing column(s) {missing}; expected a weight CSV of a BIAO run")
    if df.empty:
        raise DataError(f"{path}: no rows")
    return df


def learned_statement(df: pd.DataFrame) -> str:
    """One line: how far the scores are from those the untrained perceptron gives the same behaviours."""
    if "initial_score" not in df.columns:
        return "no initial_score column (a weight log of an older version): learning cannot be told from initialisation"
    r = score_correlation(torch.tensor(df["score"].to_numpy()), torch.tensor(df["initial_score"].to_numpy()))
    if np.isnan(r):
        return "scores are uniform (gamma only, or constant scores): no per-behaviour weighting was learned"
    verdict = ("these are still the weights of the random initialisation; do not read them as learned"
               if r >= MOVED_BELOW else "the weights moved away from their initialisation")
    return f"correlation of the scores with the untrained perceptron's on the same behaviours: r = {r:.6f} ({verdict})"


def analyse(path: str, out_dir: Optional[str] = None, top: int = 10, df: Optional[pd.DataFrame] = None
            ) -> Tuple[str, str, str]:
    """Write ``category_weights.png``, ``history_difference_weights.png`` and ``report.txt``; return their paths.
    ``df``: the CSV already loaded by :func:`load_weights` (read from ``path`` otherwise)."""
    df = load_weights(path) if df is None else df
    out_dir = out_dir or os.path.splitext(path)[0] + "-analysis"
    os.makedirs(out_dir, exist_ok=True)

    per_category = df.groupby("category")["weight"].mean().sort_values(ascending=False)
    figure3 = bar_chart(list(per_category.index), per_category.to_numpy(), os.path.join(out_dir, "category_weights.png"),
                        "Mean learned weight per source category", "source item category", "mean weight")

    difference = df["user_source_behaviours"] - df["user_target_behaviours"]
    # quantile bins keep every point on the x axis backed by a similar number of behaviours
    bins = pd.qcut(difference, q=min(20, difference.nunique()), duplicates="drop")
    per_bin = df.groupby(bins, observed=True)["weight"].mean()
    centres = difference.groupby(bins, observed=True).median()
    figure4 = line_chart(centres.to_numpy(), per_bin.to_numpy(), os.path.join(out_dir, "history_difference_weights.png"),
                         "Mean learned weight against the user's behaviour counts",
                         "source minus target training behaviours of the user (bin median)", "mean weight")

    ranked = df.sort_values("weight", ascending=False)
    lines = [f"Learned weights of {len(df):,} source behaviours from {path}",
             f"weight: mean {df['weight'].mean():.4f}, std {df['weight'].std():.4f}, "
             f"min {df['weight'].min():.4f}, max {df['weight'].max():.4f}", learned_statement(df), "",
             "Mean weight per category:"]
    lines += [f"  {c:<30} {w:.4f}  ({int((df['category'] == c).sum())} behaviours)" for c, w in per_category.items()]
    for title, part in (("Highest", ranked.head(top)), ("Lowest", ranked.tail(top).iloc[::-1])):
        lines += ["", f"{title}-weighted behaviours:"]
        for _, r in part.iterrows():
            lines.append(f"  weight {r['weight']:.4f}  user {r['user']}  item {r['item']} [{r['category']}]")
            for column, name in (("recent_source_items", "recent source"), ("recent_target_items", "recent target")):
                if column in df.columns and str(r[column]):
                    lines.append(f"      {name}: {str(r[column]).replace('|', '; ')}")
    report = os.path.join(out_dir, "report.txt")
    with atomic_path(report) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return figure3, figure4, report


def analysis_lines(path: str, out_dir: Optional[str] = None, top: int = 10) -> List[str]:
    """What ``--analyse_weights`` prints: the written files, then :func:`learned_statement` (one read of the CSV)."""
    df = load_weights(path)
    return [*analyse(path, out_dir, top, df=df), learned_statement(df)]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", help="weight CSV of a BIAO run")
    parser.add_argument("--out", help="output folder (default: <csv>-analysis/)")
    parser.add_argument("--top", type=int, default=10, help="behaviours listed at each end of the report")
    args = parser.parse_args(argv)
    try:
        print("\n".join(analysis_lines(args.csv, args.out, args.top)))
    except DataError as e:
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()
