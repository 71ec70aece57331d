"""The Amazon converter on the genuine raw files in ../shared/data/amazon_raw and on bad input."""

import ast
import csv
import gzip
import json
import os
import zlib

import numpy as np
import pytest

from dataset_converters import amazon
from recbole_biao.errors import DataError

RAW = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "amazon_raw")
needs_raw = pytest.mark.skipif(not os.path.isdir(RAW), reason=f"no raw Amazon files at {RAW}")


def complete_lines(path):
    """Independent count: decompress with zlib, split on newlines, drop a last line without its end."""
    data = open(path, "rb").read()
    if data[:2] == b"\x1f\x8b":
        inflater = zlib.decompressobj(wbits=31)
        data = inflater.decompress(data) + inflater.flush()
    lines = data.split(b"\n")
    return [line.rstrip(b"\r") for line in lines[:-1] if line.strip()], lines[-1]


def read(path, layout):
    users, items = amazon.Interner(), amazon.Interner()
    rows, report = amazon.read_reviews(path, layout, users, items)
    return rows, report, users, items


@needs_raw
def test_truncated_2014_reviews_keep_every_complete_record():
    path = os.path.join(RAW, "reviews_Digital_Music_5.json.gz")
    lines, partial = complete_lines(path)
    records = [json.loads(line) for line in lines]
    assert len(records) == 6908 and partial  # SOURCE.md: 6,908 complete lines and one partial line
    rows, report, users, items = read(path, "2014")
    assert report.truncated and "ends early" in report.truncated
    assert report.kept == 6908 and report.rejected == {"truncated last line": 1}
    assert len(users.tokens) == len({r["reviewerID"] for r in records}) == 2490
    assert len(items.tokens) == len({r["asin"] for r in records}) == 382
    assert np.allclose(rows["rating"], [r["overall"] for r in records])


@needs_raw
def test_complete_2018_reviews():
    path = os.path.join(RAW, "Appliances_5.json.gz")
    with gzip.open(path, "rt") as f:
        records = [json.loads(line) for line in f]
    rows, report, users, items = read(path, "2018")
    assert report.truncated is None and report.kept == len(records) == 2277 and not report.rejected
    assert len(users.tokens) == 47 and len(items.tokens) == 48
    assert rows["time"].tolist() == [float(r["unixReviewTime"]) for r in records]


@needs_raw
def test_2018_ratings_csv_with_crlf():
    path = os.path.join(RAW, "Magazine_Subscriptions.csv")
    with open(path, newline="") as f:
        records = list(csv.reader(f))
    rows, report, users, items = read(path, "csv")
    assert report.kept == len(records) == 546 and not report.rejected
    assert len(users.tokens) == len({r[1] for r in records}) == 535  # item,user,rating,timestamp
    assert len(items.tokens) == len({r[0] for r in records}) == 22


@needs_raw
def test_truncated_2014_meta_is_parsed_as_literals():
    path = os.path.join(RAW, "meta_Digital_Music.json.gz")
    lines, _ = complete_lines(path)
    records = [ast.literal_eval(line.decode()) for line in lines]
    assert len(records) == 7419
    wanted = {r["asin"]: i for i, r in enumerate(records[:300])}
    found, report = amazon.read_meta(path, wanted)
    assert report.truncated and report.rejected == {"truncated last line": 1} and report.kept == 300
    expected = {i: (r["categories"][0][1] if len(r["categories"][0]) > 1 else "others") for i, r in enumerate(records[:300])}
    assert {code: cat for code, (cat, _) in found.items()} == expected


@needs_raw
def test_truncated_real_files_convert_and_train(tmp_path):
    """Two 'domains' cut from the real Digital_Music reviews (by item), so that they share users."""
    lines, _ = complete_lines(os.path.join(RAW, "reviews_Digital_Music_5.json.gz"))
    raw = tmp_path / "raw"
    raw.mkdir()
    with open(raw / "reviews_MusicA_5.json", "wb") as a, open(raw / "reviews_MusicB_5.json", "wb") as b:
        for line in lines:
            (a if json.loads(line)["asin"] < "B000" else b).write(line + b"\n")
    for name in ("MusicA", "MusicB"):
        os.symlink(os.path.join(RAW, "meta_Digital_Music.json.gz"), raw / f"meta_{name}.json.gz")
    report = amazon.convert("MusicA", "MusicB", str(raw), str(tmp_path / "out"), "music-ab",
                            properties_dir=str(tmp_path / "props"), log=lambda *_: None)
    summary = report["summary"]
    users_a = {json.loads(l)["reviewerID"] for l in lines if json.loads(l)["asin"] < "B000"}
    users_b = {json.loads(l)["reviewerID"] for l in lines if json.loads(l)["asin"] >= "B000"}
    assert summary["users"] == len(users_a & users_b) > 0
    assert summary["source"]["items_without_meta"] == summary["target"]["items_without_meta"] == 0

    from recbole_biao.quick_start import run_recbole_biao
    from tests.helpers import FAST
    result = run_recbole_biao("MiNet", config_file_list=[str(tmp_path / "props" / "music-ab.yaml")],
                              config_dict={**FAST, "checkpoint_dir": str(tmp_path / "saved")})
    assert 0 < result["test_result"]["logloss"] < 1  # trains end to end on the converted real files


def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)
    return str(path)


def review(user="u1", item="i1", rating=5.0, ts=100, **drop):
    record = {"reviewerID": user, "asin": item, "overall": rating, "unixReviewTime": ts}
    for key in drop:
        record.pop(key)
    return json.dumps(record)


@pytest.mark.parametrize("line,reason", [
    ("{not json", "not JSON"),
    (review(reviewerID=None), "missing user field"),
    (review(asin=None), "missing item field"),
    (review(overall=None), "missing rating field"),
    (review(unixReviewTime=None), "missing timestamp field"),
    (review(rating="five"), "rating not a number"),
    (review(rating=7), "rating out of range [1, 5]"),
    (review(ts="yesterday"), "timestamp not a number"),
    (review(ts="nan"), "timestamp not a time in 1970 .. 2100"),
    (review(ts="inf"), "timestamp not a time in 1970 .. 2100"),
    (review(ts=-5), "timestamp not a time in 1970 .. 2100"),
    (review(ts=40000000000), "timestamp not a time in 1970 .. 2100"),  # year 3237: milliseconds read as seconds
    ("[1, 2]", "not a JSON object"),
])
def test_bad_records_are_skipped_and_counted(tmp_path, line, reason):
    path = write(tmp_path / "r.json", review() + "\n" + line + "\n" + review("u2") + "\n")
    rows, report, _, _ = read(path, "2014")
    assert report.kept == 2 and report.rejected == {reason: 1} and report.first_lines == {reason: [2]}
    with pytest.raises(DataError, match=rf"r.json:2: {reason.replace('[', '.').replace(']', '.')}"):
        amazon.read_reviews(path, "2014", amazon.Interner(), amazon.Interner(), strict=True)


def test_non_utf8_crlf_and_truncated_last_line(tmp_path):
    text = (review() + "\r\n").encode() + b'{"reviewerID": "\xff\xfe"}\r\n' + (review("u2") + "\r\n").encode() \
        + review("u3")[:20].encode()
    path = write(tmp_path / "r.json", text, "wb")
    rows, report, users, _ = read(path, "2018")
    assert report.kept == 2 and users.tokens == ["u1", "u2"]
    assert report.rejected == {"not UTF-8": 1, "truncated last line": 1}
    assert report.truncated == "last line 4 has no line end"


def test_truncated_gzip_stream(tmp_path):
    data = gzip.compress(("\n".join(review(f"u{i}") for i in range(2000)) + "\n").encode())
    path = write(tmp_path / "r.json.gz", data[: len(data) * 2 // 3], "wb")
    rows, report, _, _ = read(path, "2014")
    assert report.truncated and "ends early" in report.truncated
    assert 0 < report.kept < 2000 and sum(report.rejected.values()) <= 1


def test_meta_without_a_record_for_some_items_and_literals_never_run(tmp_path):
    meta = write(tmp_path / "meta.json", "{'asin': 'i1', 'categories': [['Books', 'Children']]}\n"
                 "__import__('os').system('touch PWNED')\n{'asin': 'i9', 'categories': [['Books']]}\n")
    found, report = amazon.read_meta(meta, {"i1": 0, "i2": 1})
    assert found == {0: ("Children", "")} and report.rejected == {"not a Python literal": 1}
    assert not os.path.exists("PWNED")


def test_no_shared_users_and_duplicates(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write(raw / "A_5.json", review("u1", "a", 5, 1) + "\n" + review("u1", "a", 2, 9) + "\n" + review("u2", "b") + "\n")
    write(raw / "B_5.json", review("u3", "c") + "\n")
    with pytest.raises(DataError, match="'A' and 'B' share no user"):
        amazon.convert("A", "B", str(raw), str(tmp_path / "out"), log=lambda *_: None)
    write(raw / "B_5.json", review("u1", "c", 4, 5) + "\n")
    report = amazon.convert("A", "B", str(raw), str(tmp_path / "out"), "ab", log=lambda *_: None)
    assert report["summary"]["source"]["duplicates_dropped"] == 1
    assert report["summary"]["source"]["items_without_meta"] == 1  # no meta file: category 'others'
    inter = open(tmp_path / "out" / "ab-source" / "ab-source.inter").read().splitlines()
    assert inter[1:] == ["u1\ta\t2\t9"]  # the latest review of (u1, a) is kept; u2 is not shared


def test_same_domain_headerless_files_and_nothing_kept_are_one_line_errors(tmp_path):
    quiet = dict(log=lambda *_: None)
    good = write(tmp_path / "good.csv", "user,item,timestamp\nu1,a,1\n")
    with pytest.raises(DataError, match=r"source and target are the same \('Books'\)"):
        amazon.convert("Books", "Books", str(tmp_path), str(tmp_path / "out"), **quiet)
    with pytest.raises(DataError, match=r"source and target are the same \('.*good.csv'\)"):
        amazon.convert("S", "T", None, str(tmp_path / "out"), source_file=good, target_file=good, **quiet)
    headerless = write(tmp_path / "plain.csv", "u1,a,5,1\n")  # user,item or item,user? not guessed
    with pytest.raises(DataError, match=r"plain.csv:1: expected a header naming the user, item and timestamp"):
        amazon.convert("S", "T", None, str(tmp_path / "out"), source_file=headerless, target_file=good, **quiet)
    bad = write(tmp_path / "bad.csv", "user,item,rating,timestamp\nu1,a,nine,1\nu2,b,5,x\n")
    with pytest.raises(DataError, match=r"target: no record kept from .*bad.csv: read 2, kept 0, rejected 2 "
                                        r"\(rating not a number: 1, first at lines \[2\]; .*timestamp"):
        amazon.convert("S", "T", None, str(tmp_path / "out"), source_file=good, target_file=bad, **quiet)


def test_header_csv_without_rating_is_implicit(tmp_path):
    path = write(tmp_path / "a.csv", "item,user,timestamp\ni1,u1,5\ni2,u1,6\n")
    rows, report, users, items = read(path, "csv")
    assert rows["rating"] is None and report.kept == 2 and users.tokens == ["u1"]
    with pytest.raises(DataError, match="a2.csv:1: header .* has no timestamp column.*--time-from-order"):
        read(write(tmp_path / "a2.csv", "user,item\nu1,i1\n"), "csv")


def test_time_from_order_takes_the_line_number_and_the_report_counts_every_drop(tmp_path):
    source = write(tmp_path / "s.csv", "user,item,rating\nu1,a,5\nu1,b,4\nu1,a,2\nu9,c,3\n")
    target = write(tmp_path / "t.csv", "user,item,rating\nu1,x,5\nu1,y,1\n")
    lines = []
    report = amazon.convert("S", "T", None, str(tmp_path / "out"), "st", source_file=source, target_file=target,
                            log=lines.append, time_from_order=True, properties_dir=str(tmp_path / "props"))
    assert amazon.TIME_FROM_ORDER in lines and amazon.TIME_FROM_ORDER in (tmp_path / "props" / "st.yaml").read_text()
    inter = open(tmp_path / "out" / "st-source" / "st-source.inter").read().splitlines()
    assert inter[1:] == ["u1\tb\t4\t3", "u1\ta\t2\t4"]  # the line numbers are the times; the later (u1, a) kept
    summary = report["summary"]["source"]
    assert (summary["behaviours"], summary["dropped_user_not_shared"], summary["duplicates_dropped"]) == (2, 1, 1)
    assert ("source: 2 behaviours written; dropped 1 of users not in both domains and 1 repeated (user, item) "
            "pairs (the latest kept)") in lines[-1]


def test_converted_implicit_dataset_trains_with_sampled_negatives(ml1m_path, tmp_path):
    """Implicit feedback: header CSVs without ratings (the ML-1M genre split, ratings dropped, 800 users)."""
    from recbole_biao.data import BiaoDataset, build_cdr_data
    from recbole_biao.quick_start import build_config, run_recbole_biao
    from tests.helpers import QUIET

    files = {}
    for domain in ("source", "target"):
        src = os.path.join(ml1m_path[0], f"ml-1m-genres-{domain}", f"ml-1m-genres-{domain}.inter")
        files[domain] = tmp_path / f"{domain}.csv"
        with open(src) as f, open(files[domain], "w") as out:
            out.write("user,item,timestamp\n")
            next(f)
            for line in f:
                user, item, _, ts = line.rstrip("\n").split("\t")
                if int(user[3:]) <= 800:
                    out.write(f'{user},"{item}",{ts}\n')
    report = amazon.convert("S", "T", None, str(tmp_path / "out"), "implicit", source_file=str(files["source"]),
                            target_file=str(files["target"]), properties_dir=str(tmp_path / "props"),
                            log=lambda *_: None)
    assert report["summary"]["source"]["implicit"] and report["summary"]["users"] > 700
    yaml_path = str(tmp_path / "props" / "implicit.yaml")
    values = {**QUIET, "checkpoint_dir": str(tmp_path / "saved"), "implicit_negatives": 2}  # the yaml's lower level

    _, config = build_config("CoNet", None, [yaml_path], values)
    data = build_cdr_data(BiaoDataset(config))
    # the yaml's batch size gives at least 100 steps per epoch of this data's actual training rows (1 negative each)
    batch, rows = config["train_batch_size"], len(data.splits["train_target"]) * 2 // 3
    assert rows / batch >= 100 and (batch == 512 or rows / (2 * batch) < 100), (batch, rows)
    for split in ("train_target", "valid", "test", "train_source"):
        rows = data.splits[split]
        assert set(np.unique(rows.label)) == {0.0, 1.0}
        assert (rows.label == 0).sum() == 2 * (rows.label == 1).sum() or split == "train_source"
    interacted = {(u, i) for s in data.splits.values() for u, i, l in zip(s.user, s.item, s.label) if l == 1}
    test = data.splits["test"]
    assert not any((u, i) in interacted for u, i, l in zip(test.user, test.item, test.label) if l == 0)
    again = build_cdr_data(BiaoDataset(build_config("CoNet", None, [yaml_path], values)[1]))
    assert np.array_equal(again.splits["test"].item, test.item)  # fixed negatives: reproducible evaluation

    # training negatives come from the items with a training positive (the catalogue known at training time)
    for domain, split in (("target", "train_target"), ("source", "train_source")):
        rows = data.splits[split]
        assert set(rows.item[rows.label == 0]) <= set(rows.item[rows.label == 1]), domain

    result = run_recbole_biao("CoNet", config_file_list=[yaml_path], config_dict=values)
    assert result["test_result"]["auc"] > 0.6, result


def test_dataset_yaml_quotes_its_data_path(tmp_path):
    import yaml

    source = write(tmp_path / "s.csv", "user,item,timestamp\nu1,a,1\nu2,b,2\n")
    target = write(tmp_path / "t.csv", "user,item,timestamp\nu1,x,3\nu2,y,4\n")
    out = str(tmp_path / "my data #1: v2")
    amazon.convert("S", "T", None, out, "odd", source_file=source, target_file=target,
                   properties_dir=str(tmp_path / "props"), log=lambda *_: None)
    with open(tmp_path / "props" / "odd.yaml") as f:
        properties = yaml.safe_load(f)
    assert properties["data_path"] == out + "/" and os.path.isfile(os.path.join(out, "odd-target", "odd-target.inter"))
    assert not list(tmp_path.rglob(".*.tmp"))  # every file was renamed from its temporary name
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "props" / "odd.yaml").stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would create it


def test_2023_layout_uses_parent_asin_and_millisecond_timestamps(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    lines = [{"rating": 4.0, "user_id": "U1", "asin": "V1", "parent_asin": "P1", "timestamp": 1588615855070},
             {"rating": 2.0, "user_id": "U2", "asin": "V2", "parent_asin": "P1", "timestamp": 1588615856000}]
    write(raw / "All_Beauty.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    write(raw / "meta_All_Beauty.jsonl", json.dumps({"parent_asin": "P1", "categories": ["Beauty", "Skin"]}) + "\n")
    path, layout, meta = amazon.find_files(str(raw), "All_Beauty")
    assert layout == "2023" and meta.endswith("meta_All_Beauty.jsonl")
    rows, report, users, items = read(path, layout)
    assert items.tokens == ["P1"] and rows["time"].tolist() == [1588615855.07, 1588615856.0]
    assert amazon.read_meta(meta, {"P1": 0})[0] == {0: ("Skin", "")}


@pytest.mark.parametrize("name", ["books-cds", "books-elec", "books-movies", "books-toys", "cds-cloth", "cds-kitchen",
                                  "elec-cloth", "movies-books"])
def test_shipped_scenario_yamls_are_what_the_converter_writes(tmp_path, name):
    import yaml

    from dataset_converters.amazon import write_properties
    from recbole_biao.config import PROPERTIES_DIR

    from recbole_biao.config import PER_MODEL
    from recbole_biao.defaults import UNTUNED

    with open(os.path.join(PROPERTIES_DIR, "dataset", f"{name}.yaml"), encoding="utf-8") as f:
        shipped = yaml.safe_load(f)
    implicit = {d: "rating" not in shipped[f"{d}_domain"]["load_col"]["inter"] for d in ("source", "target")}
    written = write_properties(str(tmp_path), name, shipped["data_path"], implicit, 40_000, 30_000, log=lambda _: 0)
    with open(written, encoding="utf-8") as f:
        converted = yaml.safe_load(f)
    training = {PER_MODEL, "train_batch_size", *UNTUNED}  # the lower level: data-dependent, written on conversion
    assert {k: v for k, v in converted.items() if k not in training} == \
        {k: v for k, v in shipped.items() if k not in training}
    assert converted["train_batch_size"] == 256 and converted["learning_rate"] == 0.001  # 40,000 rows: 156 steps
    assert converted[PER_MODEL] == {"MiNet": {"train_batch_size": 128, "learning_rate": 0.01}}
