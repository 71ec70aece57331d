"""Figures of the experiments (matplotlib, written as PNG files)."""

from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["bar_chart", "line_chart"]


def bar_chart(labels: Sequence[str], values: Sequence[float], path: str, title: str, xlabel: str, ylabel: str
              ) -> str:
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(labels)), 4.5))
    ax.bar(range(len(labels)), values, color="tab:blue")
    low, high = min(values), max(values)
    ax.set_ylim(max(0.0, low - (high - low)) if high > low else 0.0, high + 0.1 * (high - low or abs(high)))
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def line_chart(x: Sequence[float], y: Sequence[float], path: str, title: str, xlabel: str, ylabel: str,
               label: Optional[str] = None, reference: Optional[float] = None, reference_label: Optional[str] = None
               ) -> str:
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    ax.plot(x, y, marker="o", label=label)
    if reference is not None:
        ax.axhline(reference, linestyle="--", color="gray", label=reference_label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if label or reference_label:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
