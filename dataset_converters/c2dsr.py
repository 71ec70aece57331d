"""Cross-domain pairs of the public C2DSR release (Cao et al., CIKM 2022) to RecBole-CDR atomic files.

    python -m dataset_converters.c2dsr --raw-dir C2DSR/data/raw/Food-Kitchen --source Food --target Kitchen \
        --name food-kitchen [--out dataset] [--properties-dir properties/dataset]

A raw folder of that release (for example ``data/raw/Food-Kitchen`` of the public repository crystal22/C2DSR)
holds ``items_x.txt`` and ``items_y.txt`` (``<number> <ASIN> <index>`` per line: the items of domain X and of
domain Y), ``userlist.txt`` (``<reviewer ID> <index>``) and sequence files (``train_new.txt``, ``val_new.txt``,
``test_new.txt``; any of them may be missing): per line a user index, a number, then the user's behaviours of
both domains as ``<item>|<unix seconds>|<date>|``, where an item below the number of X items is an X item
and the others are Y items (offset by that number). Every behaviour is a positive (implicit feedback).

The behaviours of every sequence file found are decoded to the original reviewer IDs and ASINs and written as
two header CSVs (``user,item,timestamp``; X is the source, Y the target, ``--swap`` turns them round), which
:func:`dataset_converters.amazon.convert` then converts as any ``--source-file`` / ``--target-file`` pair, with
its report. A line that cannot be decoded stops the conversion with its file and line number.
"""

import argparse
import csv
import os
from typing import Callable, Dict, List

from dataset_converters import amazon
from recbole_biao.errors import DataError
from recbole_biao.files import atomic_path

__all__ = ["SEQUENCE_FILES", "read_index", "decode", "convert", "main"]

SEQUENCE_FILES = ("train_new.txt", "val_new.txt", "test_new.txt")


def read_index(path: str, key_column: int, index_column: int) -> Dict[int, str]:
    """``{index: name}`` of a tab-separated id file (``items_x.txt``, ``userlist.txt``)."""
    names = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip("\r\n").split("\t")
            try:
                names[int(parts[index_column])] = parts[key_column]
            except (IndexError, ValueError):
                raise DataError(f"{path}:{lineno}: expected '<number>\\t<id>\\t<index>' or '<id>\\t<index>', "
                                f"got {line.strip()[:80]!r}") from None
    return names


def decode(raw_dir: str, log: Callable[[str], None] = print) -> Dict[str, List[tuple]]:
    """The behaviours ``(user, item, timestamp)`` of domains ``x`` and ``y`` in the sequence files of ``raw_dir``,
    each distinct (user, item, time) once."""
    for needed in ("items_x.txt", "items_y.txt", "userlist.txt"):
        if not os.path.isfile(os.path.join(raw_dir, needed)):
            raise DataError(f"{raw_dir}: no {needed}; expected a raw folder of the C2DSR release")
    items_x = read_index(os.path.join(raw_dir, "items_x.txt"), 1, 2)
    items_y = read_index(os.path.join(raw_dir, "items_y.txt"), 1, 2)
    users = read_index(os.path.join(raw_dir, "userlist.txt"), 0, 1)
    offset = len(items_x)
    files = [os.path.join(raw_dir, name) for name in SEQUENCE_FILES if os.path.isfile(os.path.join(raw_dir, name))]
    if not files:
        raise DataError(f"{raw_dir}: none of {', '.join(SEQUENCE_FILES)}")
    seen = set()
    rows: Dict[str, List[tuple]] = {"x": [], "y": []}
    for path in files:
        read = 0
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                parts = line.rstrip("\r\n").split("\t")
                try:
                    user = users[int(parts[0])]
                    for entry in parts[2:]:
                        if not entry:
                            continue
                        item, stamp = entry.split("|")[:2]
                        item, stamp = int(item), int(stamp)
                        domain, name = ("x", items_x[item]) if item < offset else ("y", items_y[item - offset])
                        read += 1
                        if (user, domain, name, stamp) not in seen:
                            seen.add((user, domain, name, stamp))
                            rows[domain].append((user, name, stamp))
                except (IndexError, ValueError, KeyError) as e:
                    raise DataError(f"{path}:{lineno}: cannot decode ({type(e).__name__}: {e}); expected "
                                    f"'<user>\\t<n>\\t<item>|<seconds>|<date>|...'") from None
        log(f"{path}: {read} behaviours read")
    return rows


def convert(raw_dir: str, source: str, target: str, name: str, out_dir: str = "dataset", swap: bool = False,
            properties_dir: str = None, log: Callable[[str], None] = print) -> dict:
    """Decode ``raw_dir``, write ``<out_dir>/<name>-raw/{source,target}.csv`` and convert them; returns the
    report of :func:`dataset_converters.amazon.convert`."""
    rows = decode(raw_dir, log)
    domains = {"source": rows["y" if swap else "x"], "target": rows["x" if swap else "y"]}
    folder = os.path.join(out_dir, f"{name}-raw")
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for domain, part in domains.items():
        paths[domain] = os.path.join(folder, f"{domain}.csv")
        with atomic_path(paths[domain]) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["user", "item", "timestamp"])
            writer.writerows(sorted(part))
    made_by = (f"python -m dataset_converters.c2dsr --raw-dir <C2DSR>/data/raw/{os.path.basename(raw_dir.rstrip('/'))}"
               f" --source {source} --target {target} --name {name}" + (" --swap" if swap else ""))
    return amazon.convert(source, target, out_dir=out_dir, name=name, source_file=paths["source"],
                          target_file=paths["target"], properties_dir=properties_dir, log=log, made_by=made_by)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raw-dir", required=True, help="a raw folder of the C2DSR release, e.g. .../Food-Kitchen")
    parser.add_argument("--source", required=True, help="name of domain X (the source), e.g. Food")
    parser.add_argument("--target", required=True, help="name of domain Y (the target), e.g. Kitchen")
    parser.add_argument("--name", required=True, help="dataset name, e.g. food-kitchen")
    parser.add_argument("--out", default="dataset", help="folder receiving <name>-source/ and <name>-target/")
    parser.add_argument("--swap", action="store_true", help="Y is the source and X the target")
    parser.add_argument("--properties-dir", default="properties/dataset", help="where <name>.yaml is written")
    args = parser.parse_args(argv)
    try:
        convert(args.raw_dir, args.source, args.target, args.name, args.out, args.swap, args.properties_dir)
    except (DataError, OSError) as e:
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()
