"""The lower level (the model's own training) of data nobody has tuned yet: the rule the converters write into a
new dataset's properties file, from what ``--tune_lower`` found on the datasets measured
(``docs/tuning.md``; ``benchmarks/bench_lower.py`` checks the rule against the earlier global default).

- epochs: up to 20 with early stopping after 2 evaluations without a better valid AUC (every search winner
  peaked by its seventh epoch; a fixed 8 left runs "still improving");
- batch size: the largest power of two that gives an epoch at least :data:`MIN_STEPS_PER_EPOCH` steps, up to
  512 for every model and up to 128 for MiNet: its search winners used 64 on ML-1M and on Movies -> Books,
  while CoNet's used 512 on Movies -> Books, and 128 cost CoNet 0.0145 test AUC on Food -> Kitchen (5 seeds,
  p 0.008; ``docs/results/lower-level-food-kitchen.md``). DASL keeps the defaults of every model: its search
  on Movies -> Books chose batch 64 and lr 0.01, but batch 128 with lr 0.01 scored 0.0050 below the defaults
  on Food -> Kitchen (5 seeds, p 0.057), batch 128 alone and lr 0.01 alone also lower (one seed each);
- learning rate: 0.001, except for MiNet on a sparse target (fewer than
  :data:`SPARSE_ROWS_PER_ITEM` training rows per target item): 0.01. Adam moves an item's embedding by about
  the learning rate each time the item occurs; an item seen once or twice needs the larger step (MiNet on
  Movies -> Books: valid AUC 0.619 at 0.01 against 0.562 at 0.001). CoNet's narrow ReLU tower loses at 0.01
  there (0.52-0.53 against 0.56), so it keeps 0.001;
- pairing: ``stream``, one source row per target row (``same_user`` and a ratio of 2 never won beyond noise).
"""

from __future__ import annotations

from typing import Dict, Tuple

__all__ = ["MIN_STEPS_PER_EPOCH", "SPARSE_ROWS_PER_ITEM", "UNTUNED", "ATTENTION", "ATTENTION_LARGEST_BATCH",
           "SPARSE_LEARNING_RATE", "suggested_batch_size", "suggested_settings"]

MIN_STEPS_PER_EPOCH = 100  # on 12k target rows, 24 steps of 512 per epoch left CoNet at valid AUC 0.51 after 2 epochs
SPARSE_ROWS_PER_ITEM = 20  # ML-1M genres: 265 training rows per target item; Amazon pairs: 2-4
UNTUNED = {"learning_rate": 0.001, "train_epochs": ["BOTH:20"], "stopping_step": 2, "pairing": "stream",
           "pairing_ratio": 1}
ATTENTION = ("MiNet",)  # smaller batches, and the larger learning rate on a sparse target
ATTENTION_LARGEST_BATCH = 128
SPARSE_LEARNING_RATE = 0.01


def suggested_batch_size(train_rows: int, largest: int = 512, smallest: int = 64) -> int:
    """The largest power of two in [smallest, largest] that gives an epoch of ``train_rows`` target training
    rows at least :data:`MIN_STEPS_PER_EPOCH` steps: small data needs more, smaller steps to train at all."""
    size = largest
    while size > smallest and train_rows / size < MIN_STEPS_PER_EPOCH:
        size //= 2
    return size


def suggested_settings(train_rows: int, target_items: int) -> Tuple[Dict[str, object], Dict[str, dict]]:
    """``(keys for every model, per_model sections)`` of the rule above, for a target of ``train_rows`` training
    rows (sampled negatives included) over ``target_items`` items."""
    top = {"train_batch_size": suggested_batch_size(train_rows), **UNTUNED}
    attention = {"train_batch_size": suggested_batch_size(train_rows, largest=ATTENTION_LARGEST_BATCH)}
    if train_rows / max(target_items, 1) < SPARSE_ROWS_PER_ITEM:
        attention["learning_rate"] = SPARSE_LEARNING_RATE
    attention = {k: v for k, v in attention.items() if v != top.get(k)}  # only what differs from the file's keys
    return top, ({model: dict(attention) for model in ATTENTION} if attention else {})
