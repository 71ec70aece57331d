"""Result pages under ``docs/results/``: what a benchmark script measured, with the command, the date, the commit
and the wall time that produced it (written under a temporary name and renamed)."""

import datetime
import os
import subprocess
import sys
from typing import List

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from recbole_biao.files import atomic_path  # noqa: E402  (after the path insertion)

__all__ = ["commit", "write_page", "real_data_arguments", "mean_sd"]


def mean_sd(values) -> str:
    """A table cell: ``mean (sd)`` of ``values`` over seeds, or the value alone for one seed."""
    values = [float(v) for v in values]
    return f"{np.mean(values):.4f} ({np.std(values, ddof=1):.4f})" if len(values) > 1 else f"{values[0]:.4f}"


def real_data_arguments(parser, page: str) -> None:
    """The options every real-data benchmark takes: ``--datasets``, ``--seeds``, ``--workers`` and ``--page``."""
    parser.add_argument("--datasets", default="ml-1m-genres,movies-books")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None, help="runs in parallel on a local Ray")
    parser.add_argument("--page", default=page, help="docs/results/<page>.md")


def commit() -> str:
    """The checkout's commit, with ``+changes`` when files differ from it (the numbers then belong to neither)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def write_page(name: str, title: str, body: List[str], seconds: float, argv=None) -> str:
    """Write ``docs/results/<name>.md``: the title, how it was made, then ``body``; returns its path."""
    command = " ".join(["python", os.path.relpath(sys.argv[0], ROOT), *(sys.argv[1:] if argv is None else argv)])
    lines = [f"# {title}", "",
             f"Written by `{command}` on {datetime.date.today().isoformat()} at commit `{commit()}` "
             f"({seconds / 60:.0f} min on this machine's {os.cpu_count()} cores).", "", *body]
    path = os.path.join(ROOT, "docs", "results", f"{name}.md")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path
