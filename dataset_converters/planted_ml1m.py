"""ML-1M genre split with planted harm: the embedded data with a sparser target and corrupted source behaviours,
for ``benchmarks/bench_planted.py --data ml-1m-genres``.

The target keeps per user its last two behaviours (valid and test) and a fraction ``target_keep`` of the earlier
ones, drawn once with a fixed seed. Every source behaviour of ``categories`` is corrupted: ``users`` (moved to a
random other user), ``swap`` (moved to one other user, the same for all of a user's corrupted behaviours:
mislinked accounts), ``labels`` (a random rating 1-5), ``flip`` (rating r becomes 6 - r), ``userflip`` (the same
flip, only for a random share ``user_share`` of the users) or ``flood`` (kept, plus ``copies`` copies each with a
random user and rating: spam) or ``noise`` (kept, plus for a random share ``user_share`` of the users ``copies``
noise behaviours per real one: a random rating on one of ``planted_items`` new items of the category ``planted``,
at the real behaviour's time; the noise concentrates on few users, as a shared or hijacked account would) or
``contrary`` (the same planted rows, each rated against the user's target taste: 1 when more of the user's target
training behaviours are positive than for the median user, else 5; built from training rows only, never from the
valid and test behaviours: a source that misleads about the user rather than adding noise) or
``contrary_source`` (the same, against the user's taste read from their real *source* ratings: no target label
enters the planted rows) or ``contrary_heldout`` (the same, against the taste read from a random half of the
user's earlier target behaviours that is then taken out of the target: the planted ratings mislead about the
user's target taste without carrying a label the model trains on) or ``bias`` (the
same planted rows, all of a user's rated alike, 1 or 5 drawn per user, independent of the user's taste: a bias
that does not average out within the user, as ``noise`` does, and that tells nothing of the target). Three
datasets are written: clean, corrupted and the oracle (the corrupted data without its corrupted behaviours).
"""

import json
import os
from typing import Dict, List, Tuple

import numpy as np
import pandas as pd

from recbole_biao.files import atomic_path

__all__ = ["CONTRARY", "CORRUPTIONS", "BY_USER", "ON_PLANTED_ITEMS", "PLANTED", "read_atomic", "write"]

CONTRARY = ("contrary", "contrary_source", "contrary_heldout")  # planted rows rated against a taste
CORRUPTIONS = ("users", "swap", "labels", "flip", "flood", "userflip", "noise", *CONTRARY, "bias")
BY_USER = ("userflip", "noise", *CONTRARY, "bias")  # corruptions of a share of the users
ON_PLANTED_ITEMS = ("noise", *CONTRARY, "bias")  # rows added on new items of category PLANTED
PLANTED = "planted"


def read_atomic(path: str) -> Tuple[pd.DataFrame, List[str]]:
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    header = list(df.columns)
    df.columns = [c.split(":")[0] for c in header]
    return df, header


def write_atomic(df: pd.DataFrame, header: List[str], path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as tmp:
        out = df.copy()
        out.columns = header
        out.to_csv(tmp, sep="\t", index=False, quoting=3)


def write(source_dir: str, target_dir: str, out: str, categories: List[str], corruption: str,
                   target_keep: float, copies: int = 1, data_seed: int = 0,
                   user_share: float = 0.5, planted_items: int = 2000) -> Tuple[Dict[str, str], int, int, int]:
    """Write ``planted-clean-*``, ``planted-corrupt-*`` and ``planted-oracle-*`` atomic files (and a yaml each)
    under ``out``; return ``(the yaml paths by name, corrupted rows, source rows, target rows kept)``."""
    rng = np.random.default_rng(data_seed)
    src, src_header = read_atomic(os.path.join(source_dir, os.path.basename(source_dir) + ".inter"))
    src_items, item_header = read_atomic(os.path.join(source_dir, os.path.basename(source_dir) + ".item"))
    tgt, tgt_header = read_atomic(os.path.join(target_dir, os.path.basename(target_dir) + ".inter"))
    tgt_items, tgt_item_header = read_atomic(os.path.join(target_dir, os.path.basename(target_dir) + ".item"))

    # sparser target: the last two behaviours of each user (valid, test) and a fraction of the earlier ones
    tgt = tgt.assign(_t=tgt["timestamp"].astype(float), _r=np.arange(len(tgt)))
    tgt = tgt.sort_values(["user_id", "_t", "_r"])
    from_end = tgt.groupby("user_id").cumcount(ascending=False).to_numpy()
    keep = (from_end < 2) | (rng.random(len(tgt)) < target_keep)
    tgt = tgt[keep].drop(columns=["_t", "_r"])
    earlier = from_end[keep] >= 2
    aside = tgt[:0]
    if corruption == "contrary_heldout":  # half of the earlier rows decide the planted ratings, never trained on
        set_aside = earlier & (rng.random(len(tgt)) < 0.5)
        aside, tgt, earlier = tgt[set_aside], tgt[~set_aside], earlier[~set_aside]
    training = tgt[earlier]  # the kept target rows before each user's valid and test behaviours

    category = dict(zip(src_items["item_id"], src_items["category"]))
    hit = src["item_id"].map(category).isin(categories).to_numpy()
    bad = src.copy()
    users = np.unique(src["user_id"].to_numpy())
    items_of = {"clean": src_items, "corrupt": src_items, "oracle": src_items}
    if corruption in BY_USER:  # a share of the users: no category or item input absorbs it
        hit &= src["user_id"].isin(users[rng.random(len(users)) < user_share]).to_numpy()
    if corruption == "users":
        bad.loc[hit, "user_id"] = users[rng.integers(len(users), size=int(hit.sum()))]
    elif corruption == "swap":
        order = users[rng.permutation(len(users))]
        partner = dict(zip(order, np.roll(order, 1)))  # a cycle: nobody keeps their own behaviours
        bad.loc[hit, "user_id"] = bad.loc[hit, "user_id"].map(partner)
    elif corruption == "labels":
        bad.loc[hit, "rating"] = rng.integers(1, 6, size=int(hit.sum())).astype(str)
    elif corruption in ("flip", "userflip"):
        bad.loc[hit, "rating"] = (6 - bad.loc[hit, "rating"].astype(float)).astype(int).astype(str)
    elif corruption in ON_PLANTED_ITEMS:
        names = np.array([f"{PLANTED}-{k:05d}" for k in range(planted_items)])
        noise = pd.concat([src[hit]] * copies, ignore_index=True)
        noise["item_id"] = names[rng.integers(planted_items, size=len(noise))]
        noise["rating"] = rng.integers(1, 6, size=len(noise)).astype(str)
        if corruption in CONTRARY:
            taste = {"contrary": training, "contrary_source": src, "contrary_heldout": aside}[corruption]
            liked = (taste["rating"].astype(float) >= 4).groupby(taste["user_id"]).mean()
            likes_more = noise["user_id"].map(liked > liked.median())  # NaN: no target training rows, random rating
            noise.loc[likes_more == True, "rating"] = "1"  # noqa: E712  (NaN is neither)
            noise.loc[likes_more == False, "rating"] = "5"  # noqa: E712
        elif corruption == "bias":
            rating = dict(zip(users, np.where(rng.random(len(users)) < 0.5, "1", "5")))
            noise["rating"] = noise["user_id"].map(rating)
        noise = noise.drop_duplicates(["user_id", "item_id"])  # one behaviour per (user, item), as in real data
        new_items = pd.DataFrame({c: "" for c in src_items.columns}, index=range(planted_items))
        new_items["item_id"], new_items["category"] = names, PLANTED
        items_of["corrupt"] = pd.concat([src_items, new_items], ignore_index=True)
        bad = pd.concat([src, noise], ignore_index=True)
        hit = np.concatenate([np.zeros(len(src), dtype=bool), np.ones(len(noise), dtype=bool)])
    else:
        spam = pd.concat([src[hit]] * copies, ignore_index=True)
        spam["user_id"] = users[rng.integers(len(users), size=len(spam))]
        spam["rating"] = rng.integers(1, 6, size=len(spam)).astype(str)
        bad = pd.concat([src, spam], ignore_index=True)
        hit = np.concatenate([hit, np.ones(len(spam), dtype=bool)])

    yamls = {}
    oracle = bad[~hit] if corruption != "flood" else src  # the corrupted data without its corrupted behaviours
    for name, source in (("clean", src), ("corrupt", bad), ("oracle", oracle)):
        names = {d: f"planted-{name}-{d}" for d in ("source", "target")}
        write_atomic(source, src_header, os.path.join(out, names["source"], names["source"] + ".inter"))
        write_atomic(items_of[name], item_header, os.path.join(out, names["source"], names["source"] + ".item"))
        write_atomic(tgt, tgt_header, os.path.join(out, names["target"], names["target"] + ".inter"))
        write_atomic(tgt_items, tgt_item_header, os.path.join(out, names["target"], names["target"] + ".item"))
        lines = [f"data_path: {json.dumps(out + '/')}"]
        for d in ("source", "target"):
            lines += [f"{d}_domain:", f"  dataset: {names[d]}", "  load_col: {inter: [user_id, item_id, rating, timestamp]}",
                      '  user_inter_num_interval: "[0,inf)"', '  item_inter_num_interval: "[0,inf)"', "  val_interval: ~"]
        yamls[name] = os.path.join(out, f"planted-{name}.yaml")
        with atomic_path(yamls[name]) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return yamls, int(hit.sum()), len(bad), len(tgt)
