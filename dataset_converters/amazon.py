"""Raw Amazon review data (2014, 2018 and 2023 releases) to RecBole-CDR atomic files, streaming.

    python -m dataset_converters.amazon --source Books --target Toys_and_Games --raw-dir RAW \
        --out dataset --name books-toys [--strict] [--category-level 2] [--properties-dir properties/dataset]

Per domain it finds the review file in ``RAW`` (first match wins):

- 2014: ``reviews_<Cat>_5.json[.gz]`` (JSON lines) or ``ratings_<Cat>.csv`` (user,item,rating,timestamp);
  meta ``meta_<Cat>.json[.gz]`` (Python dict literals, parsed with ``ast.literal_eval``, never ``eval``);
- 2018: ``<Cat>_5.json[.gz]`` / ``<Cat>.json[.gz]`` (JSON lines) or ``<Cat>.csv`` (item,user,rating,timestamp);
  meta ``meta_<Cat>.json[.gz]`` (JSON lines);
- 2023: ``<Cat>.jsonl[.gz]`` (user_id, parent_asin, rating, timestamp in ms); meta ``meta_<Cat>.jsonl[.gz]``;
- any CSV given with ``--source-file`` / ``--target-file`` whose first row is a header naming its columns
  (user, item, timestamp, and rating when present): without a rating column every row is a positive
  (implicit feedback) and training samples negatives (``implicit_negatives``).

Rows are parsed one line at a time; memory grows with the kept rows and the distinct users and items, not
with the input size. A bad record is skipped and counted by reason (with its first line numbers), or with
``--strict`` stops the conversion with a one-line error. A truncated file (a gzip stream that ends early,
or a last line without its end) is reported as truncated; its complete records are kept. Repeated
(user, item) pairs keep the latest review (ties: the later line). Only users present in both domains are
kept. The item category is level ``--category-level`` of the category path (default 2, the level under
the root, as in the paper), ``others`` when there is none or the item has no meta record.
"""

import argparse
import ast
import csv
import gzip
import json
import os
import re
import zlib
from array import array
from collections import Counter
from typing import Callable, Dict, Optional

import numpy as np

from recbole_biao.errors import DataError
from recbole_biao.defaults import suggested_settings
from recbole_biao.files import atomic_path

__all__ = ["find_files", "read_reviews", "read_meta", "convert", "main"]

FIRST_LINES = 5  # line numbers kept per rejection reason
USER_KEYS = ("user", "user_id", "reviewerID", "userId")
ITEM_KEYS = ("item", "item_id", "asin", "parent_asin", "itemId")
RATING_KEYS = ("rating", "overall")
TIME_KEYS = ("timestamp", "time", "unixReviewTime")
TIME_FROM_ORDER = "times: the line numbers of the input files (--time-from-order: their lines are in time order)"
LATEST_TIME = 4102444800.0  # 2100-01-01 in Unix seconds: a later one is a unit or parsing error


class FileReport:
    """What happened to the lines of one file: read, kept, rejected by reason, truncation."""

    def __init__(self, path):
        self.path, self.read, self.kept, self.truncated = path, 0, 0, None
        self.rejected, self.first_lines = Counter(), {}

    def reject(self, lineno, reason, strict):
        if strict:
            raise DataError(f"{self.path}:{lineno}: {reason}")
        self.rejected[reason] += 1
        self.first_lines.setdefault(reason, [])
        if len(self.first_lines[reason]) < FIRST_LINES:
            self.first_lines[reason].append(lineno)

    def as_dict(self):
        return {"file": self.path, "read": self.read, "kept": self.kept, "rejected": dict(self.rejected),
                "first_lines": self.first_lines, "truncated": self.truncated}


def _chunks(path, report, chunk_size=1 << 16):
    """The bytes of a plain or gzip file; a gzip stream is decompressed with zlib so that everything
    before a truncation is recovered (the gzip module drops the last block)."""
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if not gz:
            yield from iter(lambda: raw.read(chunk_size), b"")
            return
        inflater = zlib.decompressobj(wbits=31)
        try:
            for data in iter(lambda: raw.read(chunk_size), b""):
                yield inflater.decompress(data)
                while inflater.eof and inflater.unused_data:  # a file of several gzip members
                    rest, inflater = inflater.unused_data, zlib.decompressobj(wbits=31)
                    yield inflater.decompress(rest)
            yield inflater.flush()
        except zlib.error as e:
            report.truncated = f"compressed stream is corrupt ({e})"
            return
        if not inflater.eof:
            report.truncated = "compressed stream ends early (no end-of-stream marker)"


def _lines(path, report):
    """Yield ``(line number, bytes without the line end, complete)``; notes a truncated file in ``report``."""
    lineno, rest = 0, b""
    for chunk in _chunks(path, report):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            lineno += 1
            yield lineno, line.rstrip(b"\r"), True
    if rest:
        lineno += 1
        if report.truncated is None:
            report.truncated = f"last line {lineno} has no line end"
        yield lineno, rest.rstrip(b"\r"), False


def _records(path, parse, report, strict):
    """Yield ``(lineno, record)`` for every line that decodes and parses; count the others.

    ``parse=None`` detects the format on the first line: JSON, else Python literals (2014 meta files).
    """
    for lineno, line, complete in _lines(path, report):
        if not line.strip():
            continue
        report.read += 1
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            report.reject(lineno, "not UTF-8", strict)
            continue
        if parse is None:
            try:
                json.loads(text)
                parse = _json
            except ValueError:
                parse = _literal
        try:
            record = parse(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            reason = "truncated last line" if not complete and report.truncated else f"not {parse.__doc__}"
            report.reject(lineno, reason, strict)
            continue
        if not isinstance(record, (dict, list)):
            report.reject(lineno, f"not {parse.__doc__}", strict)
            continue
        yield lineno, record


def _json(text):
    """JSON"""
    return json.loads(text)


def _literal(text):
    """a Python literal"""
    return ast.literal_eval(text)


def _csv_row(text):
    """a CSV row"""
    return next(csv.reader([text]))


def _pick(record, keys):
    for key in keys:
        if key in record:
            return record[key]
    return None


def _review_fields(record, layout, lineno=0):
    """``(user, item, rating or None, timestamp in s)`` from a parsed record, or raise ValueError(reason); a
    header layout without a time column (``--time-from-order``) takes the line number as the time."""
    if layout in ("2014_csv", "2018_csv"):
        if len(record) != 4:
            raise ValueError(f"expected 4 columns, got {len(record)}")
        user, item, rating, ts = record if layout == "2014_csv" else (record[1], record[0], record[2], record[3])
    elif isinstance(layout, dict):  # CSV with a header: column index per field
        if len(record) != layout["width"]:
            raise ValueError(f"expected {layout['width']} columns, got {len(record)}")
        user, item = record[layout["user"]], record[layout["item"]]
        ts = lineno if layout.get("time") is None else record[layout["time"]]
        rating = record[layout["rating"]] if "rating" in layout else None
    else:
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        user = _pick(record, USER_KEYS)
        # the 2023 release groups variants of a product under parent_asin
        item = _pick(record, ("parent_asin", "asin") if layout == "2023" else ITEM_KEYS)
        rating, ts = _pick(record, RATING_KEYS), _pick(record, TIME_KEYS)
        for name, value in (("user", user), ("item", item), ("rating", rating), ("timestamp", ts)):
            if value is None:
                raise ValueError(f"missing {name} field")
    if not str(user).strip() or not str(item).strip():
        raise ValueError("empty user or item")
    try:
        ts = float(ts)
    except (TypeError, ValueError):
        raise ValueError("timestamp not a number")
    if layout == "2023":
        ts /= 1000.0  # milliseconds
    if not 0.0 <= ts <= LATEST_TIME:  # (NaN fails too) training would refuse it later, far from the line
        raise ValueError("timestamp not a time in 1970 .. 2100")
    if rating is not None:
        try:
            rating = float(rating)
        except (TypeError, ValueError):
            raise ValueError("rating not a number")
        if not 1.0 <= rating <= 5.0:
            raise ValueError("rating out of range [1, 5]")
    return str(user).strip(), str(item).strip(), rating, ts


def _csv_layout(path, need_header=False, time_from_order=False):
    """The layout of a CSV: a header naming its columns, else (unless ``need_header``) an Amazon ratings-only
    file by name. Without a time column the file is refused unless ``time_from_order``: its line order is then
    the time order."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        header = [h.strip().lower() for h in next(csv.reader([f.readline()]), [])]
    names = {"user": ("user", "user_id", "reviewerid", "userid"), "item": ("item", "item_id", "asin", "parent_asin",
             "itemid"), "time": ("timestamp", "time", "unixreviewtime"), "rating": ("rating", "overall")}
    found = {k: next((header.index(n) for n in v if n in header), None) for k, v in names.items()}
    if found["user"] is not None and found["item"] is not None:
        if found["time"] is None and not time_from_order:
            raise DataError(f"{path}:1: header {header} has no timestamp column (timestamp, time or unixReviewTime); "
                            f"if the lines are in time order, --time-from-order takes the line number as the time")
        layout = {k: v for k, v in found.items() if v is not None or k == "time"}
        layout["width"] = len(header)
        return layout
    if need_header:  # a file of any name: its column order cannot be guessed
        raise DataError(f"{path}:1: expected a header naming the user, item and timestamp (and rating) columns, "
                        f"got {header}")
    return "2014_csv" if os.path.basename(path).startswith("ratings_") else "2018_csv"


def find_files(raw_dir: str, category: str):
    """``(review file, layout, meta file or None)`` of a category in ``raw_dir``."""
    def first(*names):
        for name in names:
            for suffix in ("", ".gz"):
                path = os.path.join(raw_dir, name + suffix)
                if os.path.isfile(path):
                    return path
        return None

    candidates = [(f"reviews_{category}_5.json", "2014"), (f"{category}_5.json", "2018"), (f"{category}.jsonl", "2023"),
                  (f"{category}.json", "2018"), (f"ratings_{category}.csv", "csv"), (f"{category}.csv", "csv")]
    for name, layout in candidates:
        path = first(name)
        if path:
            meta = first(f"meta_{category}.jsonl") if layout == "2023" else first(f"meta_{category}.json")
            return path, layout, meta
    raise DataError(f"{raw_dir}: no review file for '{category}' (looked for "
                    f"{', '.join(n for n, _ in candidates)}, each also .gz)")


class Interner:
    """Strings to consecutive int codes, shared by both domains so that a user has one code."""

    def __init__(self):
        self.codes, self.tokens = {}, []

    def __call__(self, token):
        code = self.codes.get(token)
        if code is None:
            code = self.codes[token] = len(self.tokens)
            self.tokens.append(token)
        return code


def read_reviews(path, layout, users, items, strict=False, time_from_order=False):
    """Stream a review file into compact arrays ``(user, item, rating, time, line)`` and a :class:`FileReport`.

    ``rating`` is None for a CSV without a rating column (implicit feedback).
    """
    report = FileReport(path)
    if layout in ("csv", "csv_with_header"):
        layout = _csv_layout(path, need_header=layout == "csv_with_header", time_from_order=time_from_order)
    parse = _csv_row if layout in ("2014_csv", "2018_csv") or isinstance(layout, dict) else _json
    skip_header = isinstance(layout, dict)
    implicit = isinstance(layout, dict) and "rating" not in layout
    # compact columns: 4 + 4 + 4 + 8 + 4 bytes per kept row
    cols = {"user": array("i"), "item": array("i"), "rating": array("f"), "time": array("d"), "line": array("i")}
    for lineno, record in _records(path, parse, report, strict):
        if skip_header:
            skip_header = False
            report.read -= 1
            continue
        try:
            user, item, rating, ts = _review_fields(record, layout, lineno)
        except ValueError as e:
            report.reject(lineno, str(e), strict)
            continue
        cols["user"].append(users(user))
        cols["item"].append(items(item))
        cols["rating"].append(1.0 if rating is None else rating)
        cols["time"].append(ts)
        cols["line"].append(lineno)
        report.kept += 1
    dtypes = {"i": np.int32, "f": np.float32, "d": np.float64}
    arrays = {k: np.frombuffer(v, dtype=dtypes[v.typecode]) if len(v) else np.empty(0, dtype=dtypes[v.typecode])
              for k, v in cols.items()}
    if implicit:
        arrays["rating"] = None
    return arrays, report


def _category(record, level):
    """Level ``level`` (1 = root) of the item's category path, or None."""
    paths = record.get("categories", record.get("category"))
    if isinstance(paths, list) and paths and isinstance(paths[0], list):  # 2014: a list of paths
        paths = paths[0]
    if isinstance(paths, list) and len(paths) >= level and str(paths[level - 1]).strip():
        return str(paths[level - 1]).strip()
    return None


def read_meta(path, wanted, level=2, strict=False):
    """``({item code: (category, title)}, FileReport)`` for the items in ``wanted`` (a dict token -> code)."""
    report = FileReport(path)
    found = {}
    for lineno, record in _records(path, None, report, strict):
        if not isinstance(record, dict):
            report.reject(lineno, "not a record", strict)
            continue
        code = wanted.get(str(_pick(record, ("parent_asin", "asin")) or "").strip())
        if code is None:
            continue
        title = record.get("title")
        title = re.sub(r"\s+", " ", str(title)).strip() if title else ""
        found[code] = (_category(record, level) or "others", title)
        report.kept += 1
    return found, report


def _deduplicate(rows):
    """Keep the latest review of each (user, item); ties by line order."""
    order = np.lexsort((rows["line"], rows["time"], rows["item"], rows["user"]))
    user, item = rows["user"][order], rows["item"][order]
    last = np.append((user[1:] != user[:-1]) | (item[1:] != item[:-1]), True)
    keep = order[last]
    return {k: (v[keep] if v is not None else None) for k, v in rows.items()}, int(len(order) - len(keep))


def _write_domain(folder, name, rows, users, items, meta, with_rating):
    os.makedirs(folder, exist_ok=True)
    order = np.lexsort((rows["time"], rows["user"]))
    with atomic_path(os.path.join(folder, f"{name}.inter")) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\t" + ("rating:float\t" if with_rating else "") + "timestamp:float\n")
        for i in order:
            rating = f"{rows['rating'][i]:g}\t" if with_rating else ""
            f.write(f"{users.tokens[rows['user'][i]]}\t{items.tokens[rows['item'][i]]}\t{rating}{rows['time'][i]:.0f}\n")
    item_codes = np.unique(rows["item"])
    with atomic_path(os.path.join(folder, f"{name}.item")) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("item_id:token\tcategory:token\ttitle:token_seq\n")
        for code in item_codes:
            category, title = meta.get(code, ("others", ""))
            f.write(f"{items.tokens[code]}\t{category.replace(chr(9), ' ')}\t{title.replace(chr(9), ' ')}\n")
    return len(item_codes)


def convert(source: str, target: str, raw_dir: Optional[str] = None, out_dir: str = "dataset",
            name: Optional[str] = None, strict: bool = False, category_level: int = 2,
            source_file: Optional[str] = None, target_file: Optional[str] = None,
            properties_dir: Optional[str] = None, log: Callable[[str], None] = print, made_by: str = "",
            time_from_order: bool = False) -> dict:
    """Convert two domains; returns the report (per file and the Table 4 summary)."""
    name = name or f"{source}-{target}".lower()
    same_file = source_file and target_file and os.path.realpath(source_file) == os.path.realpath(target_file)
    if same_file or (not source_file and not target_file and source == target):
        raise DataError(f"source and target are the same ('{source_file if same_file else source}'): cross-domain "
                        f"data needs two different domains")
    users = Interner()
    domains, files = {}, []
    for domain, category, explicit in (("source", source, source_file), ("target", target, target_file)):
        items = Interner()  # items are per domain
        if explicit:
            path, layout, meta_path = explicit, "csv_with_header", None
        else:
            if raw_dir is None:
                raise DataError(f"--raw-dir is needed to find the files of '{category}'")
            path, layout, meta_path = find_files(raw_dir, category)
        log(f"{domain}: reading {path}")
        rows, report = read_reviews(path, layout, users, items, strict, time_from_order)
        files.append(report)
        if report.kept == 0:
            raise DataError(f"{domain}: no record kept from {file_line(report.as_dict())}")
        domains[domain] = {"rows": rows, "items": items, "meta_path": meta_path, "implicit": rows["rating"] is None}
    is_shared = np.zeros(len(users.tokens), dtype=bool)
    is_shared[np.unique(domains["source"]["rows"]["user"])] = True
    in_target = np.zeros(len(users.tokens), dtype=bool)
    in_target[np.unique(domains["target"]["rows"]["user"])] = True
    is_shared &= in_target
    shared = np.flatnonzero(is_shared)
    if len(shared) == 0:
        raise DataError(f"'{source}' and '{target}' share no user: cross-domain data needs users in both domains")
    summary = {"name": name, "users": int(len(shared))}
    for domain, d in domains.items():
        rows, d["rows"] = d["rows"], None  # the unfiltered columns go as soon as they are filtered
        keep = is_shared[rows["user"]]
        rows = {k: (v[keep] if v is not None else None) for k, v in rows.items()}
        rows, duplicates = _deduplicate(rows)
        meta, meta_report = {}, None
        if d["meta_path"]:
            used = np.unique(rows["item"])
            wanted = {d["items"].tokens[c]: int(c) for c in used}
            log(f"{domain}: reading {d['meta_path']}")
            meta, meta_report = read_meta(d["meta_path"], wanted, category_level, strict)
            files.append(meta_report)
        folder_name = f"{name}-{domain}"
        n_items = _write_domain(os.path.join(out_dir, folder_name), folder_name, rows, users, d["items"], meta,
                                not d["implicit"])
        summary[domain] = {"behaviours": int(len(rows["user"])), "items": n_items,
                           "dropped_user_not_shared": int((~keep).sum()), "duplicates_dropped": duplicates,
                           "items_without_meta": int(n_items - len(meta)), "implicit": d["implicit"]}
    if properties_dir:
        # leave-one-out keeps all but two target behaviours per user for training; implicit ones get a negative each
        train_rows = summary["target"]["behaviours"] - 2 * summary["users"]
        train_rows *= 2 if domains["target"]["implicit"] else 1
        write_properties(properties_dir, name, out_dir, {d: v["implicit"] for d, v in domains.items()},
                         max(train_rows, 1), summary["target"]["items"], log,
                         "; ".join(t for t in (made_by, TIME_FROM_ORDER * time_from_order) if t))
    report = {"files": [f.as_dict() for f in files], "summary": summary}
    if time_from_order:
        log(TIME_FROM_ORDER)
    log(format_report(report))
    return report


def write_properties(properties_dir: str, name: str, out_dir: str, implicit: Dict[str, bool], train_rows: int,
                     target_items: int, log: Callable[[str], None] = print, made_by: str = "") -> str:
    """A ``properties/dataset/<name>.yaml`` for the converted pair, with the lower level of data nobody has tuned
    yet (:func:`recbole_biao.defaults.suggested_settings`: keys for every model, and ``per_model`` sections).
    An existing file's lower level is kept as it is: its keys for every model where it has any (only those of
    the rule it has; a file with none, such as a shipped scenario's, gets the rule's) and its ``per_model``
    sections (a search's results, or hand-written); the rule's section of a model is written only where the
    file has none; ``made_by``: the command that made the atomic files, as a comment. Returns the path."""
    from recbole_biao.experiments.per_model import read_sections, section_lines, write_section

    top, sections = suggested_settings(train_rows, target_items)
    path = os.path.join(properties_dir, f"{name}.yaml")
    exists = os.path.isfile(path)
    kept = section_lines(path) if exists else []
    current, tuned = read_sections(path) if exists else ({}, {})
    if any(key in current for key in top):  # converting again must not change what results were measured at
        top = {key: current[key] for key in top if key in current}
        origin = "the lower level kept from the file before; delete the file for the rule's"
        log(f"{path}: kept the existing keys for every model ({', '.join(top)})")
    else:
        origin = f"recbole_biao/defaults.py: the lower level of untuned data, {train_rows} target training rows " \
                 f"over {target_items} items"
    lines = [f"# {name}: written by dataset_converters ({origin}; tune with --tune_lower)",
             f"data_path: {json.dumps(out_dir.rstrip('/') + '/')}"]  # quoted: a path may hold '#' or ': '
    if made_by:
        lines.insert(1, f"# the atomic files: {made_by}")
    lines += [f"{key}: {json.dumps(value)}" for key, value in top.items()]
    for domain in ("source", "target"):
        columns = "[user_id, item_id, timestamp]" if implicit[domain] else "[user_id, item_id, rating, timestamp]"
        lines += [f"{domain}_domain:", f"  dataset: {name}-{domain}", f"  load_col: {{inter: {columns}}}",
                  '  user_inter_num_interval: "[0,inf)"', '  item_inter_num_interval: "[0,inf)"', "  val_interval: ~"]
        if implicit[domain]:
            lines.append("  threshold: ~                  # implicit feedback: every row is a positive")
    if kept:
        lines += [""] + kept
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    for model, values in sections.items():
        if model in tuned:
            log(f"{path}: kept the existing per_model section of {model}")
        else:
            write_section(path, model, values, [f"{model}: recbole_biao/defaults.py ("
                                                f"{train_rows / max(target_items, 1):.1f} target training rows per "
                                                f"item)"])
    return path


def file_line(f):
    """One file's line of the report: records read, kept and rejected, with the reasons and first lines."""
    line = f"{f['file']}: read {f['read']}, kept {f['kept']}, rejected {sum(f['rejected'].values())}"
    if f["rejected"]:
        line += " (" + "; ".join(f"{r}: {n}, first at lines {f['first_lines'][r]}" for r, n in f["rejected"].items()) + ")"
    if f["truncated"]:
        line += f"; TRUNCATED: {f['truncated']}"
    return line


def format_report(report: dict) -> str:
    out = [file_line(f) for f in report["files"]]
    s = report["summary"]
    for domain in ("source", "target"):
        d = s[domain]
        out.append(f"{domain}: {d['behaviours']:,} behaviours written; dropped {d['dropped_user_not_shared']:,} of "
                   f"users not in both domains and {d['duplicates_dropped']:,} repeated (user, item) pairs (the "
                   f"latest kept)")
    out.append(f"{'Dataset':<20}{'#Source behaviours':>20}{'#Target behaviours':>20}{'#Users':>9}"
               f"{'#Source items':>15}{'#Target items':>15}")
    out.append(f"{s['name']:<20}{s['source']['behaviours']:>20,}{s['target']['behaviours']:>20,}{s['users']:>9,}"
               f"{s['source']['items']:>15,}{s['target']['items']:>15,}")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True, help="source category, e.g. Books")
    parser.add_argument("--target", required=True, help="target category, e.g. Toys_and_Games")
    parser.add_argument("--raw-dir", help="folder holding the raw files")
    parser.add_argument("--source-file", help="review file of the source domain (overrides --raw-dir)")
    parser.add_argument("--target-file", help="review file of the target domain (overrides --raw-dir)")
    parser.add_argument("--out", default="dataset", help="folder receiving <name>-source/ and <name>-target/")
    parser.add_argument("--name", help="dataset name (default: <source>-<target>, lower case)")
    parser.add_argument("--category-level", type=int, default=2, help="level of the category path (1 = root)")
    parser.add_argument("--properties-dir", default="properties/dataset", help="where <name>.yaml is written")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad record")
    parser.add_argument("--time-from-order", action="store_true",
                        help="a CSV without a time column: its line order is the time order (only if it is)")
    args = parser.parse_args(argv)
    try:
        convert(args.source, args.target, args.raw_dir, args.out, args.name, args.strict, args.category_level,
                args.source_file, args.target_file, args.properties_dir, time_from_order=args.time_from_order)
    except (DataError, OSError) as e:
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()
