"""An implicit-feedback pair with planted source behaviours, for ``benchmarks/bench_planted.py --data movies-books``.

The source gains ``share`` x its own number of rows as spam: positives of random source users on ``items`` new
source items of the category ``planted`` (so the perceptron can see them through the item's category, as on
generated data), each with the timestamp of a random real source row. The target is unchanged. Three datasets
are written from the dataset's properties yaml: clean, corrupted, and the oracle (the corrupted data without its
planted behaviours, i.e. the clean data).
"""

import os
from typing import Dict, Tuple

import numpy as np
import pandas as pd
import yaml

from dataset_converters.planted_ml1m import read_atomic, write_atomic
from recbole_biao.files import atomic_path

__all__ = ["PLANTED", "write"]

PLANTED = "planted"


def _domain_files(config: dict, domain: str) -> Dict[str, str]:
    name = config[f"{domain}_domain"]["dataset"]
    folder = os.path.join(config.get("data_path", "dataset/"), name)
    files = {ext: os.path.join(folder, f"{name}.{ext}") for ext in ("inter", "item")}
    for path in files.values():
        if not os.path.isfile(path):
            raise SystemExit(f"planted_implicit: {path} not found; convert the dataset first (docs/data.md)")
    return files


def write(dataset_yaml: str, out: str, share: float = 1.0, items: int = 2000,
          data_seed: int = 0) -> Tuple[Dict[str, str], int, int, int]:
    """Write ``planted-{clean,corrupt,oracle}-{source,target}`` atomic files and a yaml each under ``out``;
    return ``(the yaml paths by name, planted rows, source rows of the corrupted data, target rows)``."""
    with open(dataset_yaml, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    files = {d: _domain_files(config, d) for d in ("source", "target")}
    src, src_header = read_atomic(files["source"]["inter"])
    if "rating" in src.columns:
        raise SystemExit(f"planted_implicit: {files['source']['inter']} has a rating column; spam positives are "
                         f"for implicit feedback")
    src_items, item_header = read_atomic(files["source"]["item"])
    tgt, tgt_header = read_atomic(files["target"]["inter"])
    tgt_items, tgt_item_header = read_atomic(files["target"]["item"])

    rng = np.random.default_rng(data_seed)
    users = np.unique(src["user_id"].to_numpy())
    count = int(share * len(src))
    names = np.array([f"{PLANTED}-{k:05d}" for k in range(items)])
    spam = pd.DataFrame({c: "" for c in src.columns}, index=range(count))
    spam["user_id"] = users[rng.integers(len(users), size=count)]
    spam["item_id"] = names[rng.integers(items, size=count)]
    spam["timestamp"] = src["timestamp"].to_numpy()[rng.integers(len(src), size=count)]
    spam = spam.drop_duplicates(["user_id", "item_id"])  # one behaviour per (user, item), as in real data
    new_items = pd.DataFrame({c: "" for c in src_items.columns}, index=range(items))
    new_items["item_id"], new_items["category"] = names, PLANTED

    sources = {"clean": (src, src_items), "corrupt": (pd.concat([src, spam], ignore_index=True),
                                                      pd.concat([src_items, new_items], ignore_index=True)),
               "oracle": (src, src_items)}
    yamls = {}
    for name, (inter, item) in sources.items():
        datasets = {d: f"planted-{name}-{d}" for d in ("source", "target")}
        for d, (frames, headers) in {"source": ((inter, item), (src_header, item_header)),
                                     "target": ((tgt, tgt_items), (tgt_header, tgt_item_header))}.items():
            folder = os.path.join(out, datasets[d])
            write_atomic(frames[0], headers[0], os.path.join(folder, f"{datasets[d]}.inter"))
            write_atomic(frames[1], headers[1], os.path.join(folder, f"{datasets[d]}.item"))
        values = {k: v for k, v in config.items() if k not in ("dataset_converter", "converter_name")}
        values["data_path"] = out.rstrip("/") + "/"
        for d in ("source", "target"):
            values[f"{d}_domain"] = {**config[f"{d}_domain"], "dataset": datasets[d]}
        yamls[name] = os.path.join(out, f"planted-{name}.yaml")
        with atomic_path(yamls[name]) as tmp, open(tmp, "w", encoding="utf-8") as f:
            yaml.safe_dump(values, f, sort_keys=False)
    return yamls, len(spam), len(src) + len(spam), len(tgt)
