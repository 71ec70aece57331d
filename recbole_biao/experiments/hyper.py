"""``--hyper_config``: hyper-parameter search with RecBole's ``HyperTuning`` (hyperopt), objective = valid AUC.

The search space is a file in RecBole's hyper-config format, one key per line::

    interval choice [20,100,500]
    upper_learning_rate loguniform -7,-2        # RecBole writes -7,-2; -7 -2 is read the same
    learning_rate uniform 0.0005,0.005
    embedding_size quniform 8,32,8

It is parsed here without ``eval`` (RecBole's own parser evaluates ``choice`` values as code). Every trial is
a run of ``run_recbole_biao`` cached like the runs of ``--compare`` (same cache, same keys), so a repeated
search, or a trial that repeats a configuration, trains nothing again.
"""

import ast
import contextlib
import io
import math
import os
import warnings
from typing import Callable, Dict, List, Tuple

import yaml

from recbole_biao.errors import ConfigError
from recbole_biao.files import atomic_path

__all__ = ["parse_hyper_config", "search_space", "tune", "DISTRIBUTIONS", "ALGORITHMS"]

DISTRIBUTIONS = {"choice": None, "uniform": 2, "quniform": 3, "loguniform": 2}  # name -> number of bounds
ALGORITHMS = ("auto", "exhaustive", "random", "bayes")


def _bounds(text, count, where):
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{where}: expected {count} numbers ({'low,high' if count == 2 else 'low,high,q'}), "
                          f"got '{text}'")
    if values[0] >= values[1]:
        raise ConfigError(f"{where}: expected low < high, got '{text}'")
    if count == 3 and values[2] <= 0:
        raise ConfigError(f"{where}: expected a step q > 0, got '{text}'")
    return values


def parse_hyper_config(path: str, extra_keys=()) -> Dict[str, Tuple[str, list]]:
    """``{key: (distribution, arguments)}`` of a RecBole hyper-config file: ``choice`` with the list of values
    (Python literals; a string such as ``'[64,32]'`` is read as RecBole reads it, as the value it spells),
    ``uniform`` / ``loguniform`` with ``[low, high]``, ``quniform`` with ``[low, high, q]``. Blank lines and
    ``#`` comments are skipped; a bad line, or a key nobody reads (unless in ``extra_keys``), is a one-line
    :class:`ConfigError` naming ``path:line``."""
    from recbole_biao.config import check_known_keys

    if not os.path.isfile(path):
        raise ConfigError(f"--hyper_config: file '{path}' not found")
    space = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError:
        raise ConfigError(f"--hyper_config: '{path}' is not a text file (expected lines like "
                          f"'interval choice [20,100,500]')") from None
    for lineno, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split(None, 2)
        where = f"{path}:{lineno}"
        if len(parts) < 3:
            raise ConfigError(f"{where}: expected '<key> <distribution> <values>', got '{text}'")
        key, kind, rest = parts
        if kind not in DISTRIBUTIONS:
            raise ConfigError(f"{where}: unknown distribution '{kind}'; expected one of {list(DISTRIBUTIONS)}")
        check_known_keys([key], where, extra_keys)
        if key in space:
            raise ConfigError(f"{where}: key '{key}' is already searched on an earlier line")
        if kind == "choice":
            try:
                values = ast.literal_eval(rest)  # (quoted values keep their spaces)
            except (ValueError, SyntaxError):
                raise ConfigError(f"{where}: choice values must be a list of literals, e.g. [20,100,500]; "
                                  f"got '{rest}'") from None
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}: choice values must be a non-empty list, got '{rest}'")
            space[key] = (kind, values)
        else:
            space[key] = (kind, _bounds(rest, DISTRIBUTIONS[kind], where))
    if not space:
        raise ConfigError(f"{path}: no key to search (expected lines like 'interval choice [20,100,500]')")
    return space


def search_space(parsed: Dict[str, Tuple[str, list]]) -> dict:
    """The hyperopt space of :func:`parse_hyper_config`'s result."""
    from hyperopt import hp

    space = {}
    for key, (kind, args) in parsed.items():
        space[key] = hp.choice(key, args) if kind == "choice" else getattr(hp, kind)(key, *args)
    return space


def _algorithm(name, parsed):
    from hyperopt import rand, tpe

    if name == "auto":  # RecBole's default (a grid) where the space is one; TPE otherwise
        name = "exhaustive" if all(kind == "choice" for kind, _ in parsed.values()) else "bayes"
    if name == "exhaustive" and any(kind != "choice" for kind, _ in parsed.values()):
        raise ConfigError("--algo=exhaustive needs 'choice' keys only; use --algo=bayes or random for "
                          "uniform / loguniform / quniform keys")
    return name, {"exhaustive": "exhaustive", "random": rand.suggest, "bayes": tpe.suggest}[name]


def _label(params):
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _trial_values(params, parsed):
    """hyperopt's draw as properties values: plain Python numbers, ``quniform`` draws on an integer grid as ints
    (an ``embedding_size`` of 16.0 is not an int)."""
    values = {}
    for key, value in params.items():
        value = _plain(value)
        if parsed[key][0] == "quniform" and float(value).is_integer() and all(float(a).is_integer()
                                                                            for a in parsed[key][1]):
            value = int(value)
        values[key] = value
    return values


def tune(model: str, hyper_config: str, max_evals: int = 10, algo: str = "auto", trainer=None, dataset=None,
         config_files=None, config_dict=None, show_epochs=False, out_dir=None, cache_dir=None, pool=None) -> str:
    """Search ``hyper_config``'s space for the best valid AUC of ``model`` (+ ``trainer``) with RecBole's
    ``HyperTuning``, at most ``max_evals`` trials; writes ``<out_dir>/<name>.md`` (the trials, best first) and
    ``<out_dir>/<name>-best.yaml`` (the best values, a properties file for ``--config_files``) and returns the
    report. ``out_dir`` defaults to ``log/hyper``, ``cache_dir`` to the run cache of ``--compare``.

    With a ``pool`` (``--workers``), the trials of a random or exhaustive search are drawn first (their draws do
    not depend on the results), run in parallel, then the search runs as without it, from the cache; TPE
    (``bayes``) draws each trial from the results before it, so it has no parallel form here."""
    try:
        with warnings.catch_warnings():  # hyperopt 0.2.7's own import of pkg_resources warns
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            import hyperopt  # noqa: F401  (a missing install fails here, before anything trains)
    except ImportError:
        raise ConfigError("--hyper_config needs hyperopt: pip install hyperopt==0.2.7 (requirements.txt pins it)"
                          ) from None
    from recbole.trainer import HyperTuning

    from recbole_biao.experiments import parallel
    from recbole_biao.experiments.commands import OUT_DIR, dataset_label, overrides_label
    from recbole_biao.experiments.compare import Row, RunCache, run_one, run_rows
    from recbole_biao.utils import get_model, get_trainer

    if algo not in ALGORITHMS:
        raise ConfigError(f"--algo: expected one of {list(ALGORITHMS)}, got '{algo}'")
    if max_evals < 1:
        raise ConfigError(f"--max_evals: expected an int >= 1, got {max_evals}")
    get_model(model), get_trainer(trainer)  # a misspelled name fails before anything trains
    from recbole_biao.config import declared_extra_keys
    from recbole_biao.quick_start import run_config_files

    parsed = parse_hyper_config(hyper_config, declared_extra_keys(run_config_files(dataset, config_files),
                                                                  config_dict))
    algo, suggest = _algorithm(algo, parsed)
    out_dir = out_dir or os.path.join("log", "hyper")
    cache = RunCache(cache_dir or os.path.join(OUT_DIR, "cache"))
    seed = int((config_dict or {}).get("seed", 2023))
    runner = parallel.runner(show_epochs)
    trials: List[Tuple[dict, dict, dict]] = []
    if pool is not None and algo == "bayes":
        raise ConfigError("--workers with --hyper_config: TPE (bayes) draws each trial from the results before it; "
                          "use --algo=random or exhaustive to run trials in parallel")

    failed = {}  # label -> error of the trials that failed on the workers (not run again)

    def objective(params: dict, _config_files) -> dict:
        values = _trial_values(params, parsed)
        if _label(values) in failed:
            test, valid = None, failed[_label(values)]
        else:
            test, valid = run_one(Row(_label(values), model, trainer, values), seed, runner, cache, dataset,
                                  config_files, config_dict)
        trials.append((values, valid, test))
        if test is None:  # a failed trial (valid holds its error): the worst score, the search goes on
            return {"best_valid_score": -math.inf, "valid_score_bigger": True, "best_valid_result": None,
                    "test_result": None}
        return {"best_valid_score": valid["auc"], "valid_score_bigger": True, "best_valid_result": valid,
                "test_result": test}

    def search(function: Callable) -> None:
        tuner = HyperTuning(function, space=search_space(parsed), algo=suggest, max_evals=max_evals)
        tuner.max_evals = min(int(tuner.max_evals), max_evals)  # RecBole's grid would run every combination
        os.environ["HYPEROPT_FMIN_SEED"] = str(seed)  # hyperopt's draws follow the run's seed
        tuner.run()

    if pool is not None:  # draw the trials, run them in parallel into the cache; the search below reads them
        drawn = []

        def draw(params: dict, _config_files) -> dict:
            drawn.append(_trial_values(params, parsed))
            return {"best_valid_score": 0.0, "valid_score_bigger": True, "best_valid_result": {},
                    "test_result": {}}

        with contextlib.redirect_stdout(io.StringIO()):  # RecBole's trial prints the made-up scores
            search(draw)
        _, failures = run_rows([Row(_label(v), model, trainer, v) for v in drawn], [seed], runner, cache, dataset,
                               config_files, config_dict, pool=pool, need_valid=True)
        failed.update((label, error) for label, _, error in failures)
    search(objective)
    name = (f"{model}{'+' + trainer if trainer else ''}-{dataset_label(dataset, config_files)}"
            f"{overrides_label(config_dict)}-{os.path.splitext(os.path.basename(hyper_config))[0]}")
    return _report(trials, f"{model}{' + ' + trainer if trainer else ''}", algo, hyper_config, out_dir, name)


def _report(trials, what, algo, hyper_config, out_dir, name):
    failed = [(values, error) for values, error, test in trials if test is None]
    trials = [t for t in trials if t[2] is not None]
    if not trials:
        raise ConfigError(f"--hyper_config: every trial failed; the first: {failed[0][1]}")
    ranked = sorted(trials, key=lambda t: -t[1]["auc"] if not math.isnan(t[1]["auc"]) else math.inf)
    best = ranked[0][0]
    keys = list(best)
    title = f"{what}: {len(trials)} trials of {hyper_config} ({algo} search), best valid AUC first"
    lines = [f"**{title}**", "", "| " + " | ".join(keys) + " | valid AUC | test AUC |",
             "|" + "---|" * (len(keys) + 2)]
    for values, valid, test in ranked:
        lines.append("| " + " | ".join(str(values[k]) for k in keys) + f" | {valid['auc']:.4f} | {test['auc']:.4f} |")
    if failed:
        lines += [""] + [f"failed: {_label(values)}: {error}" for values, error in failed]
    lines += ["", "best: " + _label(best)]
    os.makedirs(out_dir, exist_ok=True)
    with atomic_path(os.path.join(out_dir, name + ".md")) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    best_file = os.path.join(out_dir, name + "-best.yaml")
    with atomic_path(best_file) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump({k: _plain(v) for k, v in best.items()}, f, sort_keys=False)
    lines.append(f"written: {os.path.join(out_dir, name + '.md')}, {best_file} (use it with --config_files)")
    return "\n".join(lines)


def _plain(value):
    """hyperopt's numbers (numpy scalars) as plain Python for YAML."""
    return value.item() if hasattr(value, "item") else value
