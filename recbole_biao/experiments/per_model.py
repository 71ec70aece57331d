"""Writing one model's ``per_model`` section of a dataset properties file (what ``--tune_lower`` found), keeping
everything else in the file as it was written.

The section is written in block style at the end of the file, under one ``per_model:`` key::

    per_model:
      # MiNet: ... (a comment: when, how well, and the command)
      MiNet:
        train_batch_size: 64
        learning_rate: 0.01

A model's earlier section (with the comment lines right above it) is replaced; the sections of other models
and every other line are kept byte for byte. The file is written under a temporary name and renamed.
"""

from __future__ import annotations

import re
from typing import Dict, List, Tuple

import yaml

from recbole_biao.config import PER_MODEL
from recbole_biao.errors import ConfigError
from recbole_biao.files import atomic_path

__all__ = ["read_sections", "write_section", "overridden_keys", "section_lines"]

_TOP_KEY = re.compile(r"^[^\s#][^:]*:")


def _lines(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def read_sections(path: str) -> Tuple[dict, dict]:
    """``(the file's keys without per_model, its per_model sections)``."""
    with open(path, encoding="utf-8") as f:
        content = yaml.safe_load(f) or {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of properties keys")
    sections = content.pop(PER_MODEL, None) or {}
    if not isinstance(sections, dict):
        raise ConfigError(f"{path}: key '{PER_MODEL}': expected a mapping of model names to properties")
    return content, sections


def _split(lines: List[str]) -> Tuple[List[str], List[str], List[str]]:
    """The lines before the ``per_model:`` block, its lines (without the key's own line), and those after it."""
    start = next((i for i, line in enumerate(lines) if re.match(rf"^{PER_MODEL}\s*:", line)), None)
    if start is None:
        return lines, [], []
    if lines[start].split(":", 1)[1].split("#", 1)[0].strip():  # flow style: per_model: {...}
        raise ConfigError(f"the '{PER_MODEL}:' key is written on one line; write its sections as an indented block")
    end = next((i for i in range(start + 1, len(lines)) if _TOP_KEY.match(lines[i])), len(lines))
    body = lines[start + 1:end]
    while body and not body[-1].strip():  # blank lines at its end belong to what follows
        body.pop()
    return lines[:start], body, lines[start + 1 + len(body):]


def section_lines(path: str) -> List[str]:
    """The lines of the file's ``per_model:`` block (its key included), as written; none if it has none."""
    _, body, _ = _split(_lines(path))
    return [f"{PER_MODEL}:"] + body if body else []


def _chunks(body: List[str]) -> List[Tuple[str, List[str]]]:
    """The block's sections as ``(model name, lines)``, each with the comment lines right above its name."""
    chunks, pending = [], []
    for line in body:
        name = re.match(r"^  ([A-Za-z_][\w-]*)\s*:", line)
        if name:
            chunks.append((name.group(1), pending + [line]))
            pending = []
        elif line.startswith("    ") and chunks and not pending:
            chunks[-1][1].append(line)
        else:
            pending.append(line)
    if pending:
        chunks.append(("", pending))  # trailing comments: kept as they are
    return chunks


def _format(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def write_section(path: str, model: str, values: Dict[str, object], comment: List[str]) -> None:
    """Set ``per_model: {model: values}`` in the dataset yaml ``path`` (replacing that model's earlier section),
    with ``comment`` lines above it; atomic. The result is read back and checked before it replaces the file."""
    lines = _lines(path)
    before, body, after = _split(lines)
    chunks = [(name, chunk) for name, chunk in _chunks(body) if name != model]
    new = [f"  # {text}" for text in comment] + [f"  {model}:"]
    new += [f"    {key}: {_format(value)}" for key, value in values.items()]
    chunks.append((model, new))
    while before and not before[-1].strip():
        before.pop()
    text = before + ["", f"{PER_MODEL}:"] + [line for _, chunk in chunks for line in chunk]
    while after and not after[0].strip():
        after = after[1:]
    if after:
        text += [""] + after
    content = "\n".join(text) + "\n"
    try:
        written = yaml.safe_load(content)[PER_MODEL][model]
    except (yaml.YAMLError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: could not write the section of {model} ({e})") from None
    if written != values:
        raise ConfigError(f"{path}: the section of {model} would read back as {written}, not {values}")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(content)


def overridden_keys(path: str, model: str, values: Dict[str, object]) -> List[str]:
    """Lines naming what a new section of ``model`` changes in ``path``: the file's own keys it overrides for
    that model, and the keys of the model's earlier section it replaces with other values."""
    top, sections = read_sections(path)
    old = sections.get(model) or {}
    notes = [f"{key}: the file's {top[key]!r} is overridden by {values[key]!r} for {model}"
             for key in values if key in top and top[key] != values[key]]
    notes += [f"{PER_MODEL}.{model}.{key}: {old[key]!r} is replaced by {values.get(key, '(removed)')!r}"
              for key in old if old[key] != values.get(key, object())]
    return notes
