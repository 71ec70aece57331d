"""``--tune_lower``: search the lower level (the model's own training) of one model on one dataset, and record the
best settings in the dataset's properties file, where every later run of that model reads them.

    python run_recbole_biao.py --model=MiNet --dataset=movies-books --tune_lower [--max_trials=20]
                               [--max_minutes=45] [--workers=2] [--no_write]

The search (each trial one training run, objective: valid AUC; a collapsed run, one that predicts a constant,
never wins):

1. the previous settings: the model as the dataset's properties file trains it today;
2. stages, each trying every combination of its keys with the other keys at the best found so far
   (:data:`STAGES`: learning rate x batch size, then pairing, then pairing ratio), all with the search's epoch
   schedule (:data:`SCHEDULE`: up to 20 epochs, early stopping after 2 evaluations without a better valid AUC);
3. confirmation: the previous settings and the best trials are trained again with further seeds
   (:data:`SEEDS`), so that the choice rests on a mean over seeds rather than on one lucky run.

The winner replaces the previous settings only when its mean valid AUC beats theirs by :data:`MARGIN` or more;
otherwise the search says that it could not improve on them and writes nothing. The winner is written as the
model's ``per_model`` section of ``properties/dataset/<dataset>.yaml`` (atomically, with a comment: date, valid
AUCs, command), so that every variant and trainer of that model (Base-S, Base-0, Base, BIAO) trains with it.

A budget of ``max_trials`` runs (cached ones count) and, optionally, ``max_minutes`` of wall time is checked
before each trial (before each stage with ``--workers``). Every trial is cached like the runs of ``--compare``:
an interrupted search, run again, trains only what it had not finished, and takes the same decisions.
"""

from __future__ import annotations

import datetime
import itertools
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from recbole_biao.config import PROPERTIES_DIR
from recbole_biao.errors import ConfigError
from recbole_biao.evaluation import require_ctr
from recbole_biao.experiments.compare import Row, RunCache, run_rows
from recbole_biao.experiments.per_model import overridden_keys, write_section
from recbole_biao.files import atomic_path

__all__ = ["STAGES", "SCHEDULE", "SEEDS", "MARGIN", "Trial", "Search", "tune_lower"]

# the keys searched, stage by stage; values in the order they are tried
STAGES: Tuple[Tuple[str, Dict[str, tuple]], ...] = (
    ("learning rate x batch size", {"learning_rate": (0.01, 0.003, 0.001), "train_batch_size": (512, 256, 128, 64)}),
    ("pairing", {"pairing": ("stream", "same_user")}),
    ("pairing ratio", {"pairing_ratio": (1, 2)}),
)
SCHEDULE = {"train_epochs": ["BOTH:20"], "stopping_step": 2}  # every search trial's epochs (early stopping decides)
SEEDS = (2023, 2024, 2025)  # a trial's seed; the finalists are trained again with the others
FINALISTS = 2  # search trials confirmed besides the previous settings, best first, as far as the budget goes
MARGIN = 0.002  # the mean valid AUC the winner must gain over the previous settings to replace them


@dataclass
class Trial:
    """One training run of the search."""

    values: dict
    seed: int
    valid: Optional[float] = None  # best valid AUC; None: failed
    test: Optional[float] = None
    collapsed: bool = False
    still_improving: bool = False
    best_epoch: Optional[int] = None
    error: Optional[str] = None

    @property
    def score(self) -> float:
        """The valid AUC as the search ranks it: -inf for a failed or collapsed run."""
        return -math.inf if self.valid is None or self.collapsed or math.isnan(self.valid) else self.valid


def _key(values: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in values.items()))


def label(values: dict) -> str:
    """``key=value, ...`` of a trial's settings (the epoch schedule only where it is not the search's)."""
    return ", ".join(f"{k}={v}" for k, v in values.items() if not (k in SCHEDULE and SCHEDULE[k] == v))


@dataclass
class Search:
    """One search: its trials and budget. ``run(trials)`` trains (or reads from the cache) a list of new trials
    and fills in their results; ``parallel``: it takes a whole stage at once (else one trial at a time, so that
    the time budget is checked before each)."""

    previous: dict
    run: Callable[[List[Trial]], None]
    max_trials: int
    deadline: float = math.inf
    stages: Sequence = STAGES
    parallel: bool = False
    trials: Dict[tuple, Trial] = field(default_factory=dict)
    stopped: str = ""

    def _allowed(self) -> bool:
        if len(self.trials) >= self.max_trials:
            self.stopped = self.stopped or "trial budget spent"
        elif time.time() > self.deadline:
            self.stopped = self.stopped or "time budget spent"
        return not self.stopped

    def evaluate(self, pairs: List[Tuple[dict, int]]) -> None:
        """Train the ``(settings, seed)`` pairs that have no trial yet, in order, as far as the budget allows."""
        todo = []
        for values, seed in pairs:
            key = (_key(values), seed)
            if key in self.trials:
                continue
            if not self._allowed():
                break
            self.trials[key] = trial = Trial(dict(values), seed)
            if self.parallel:
                todo.append(trial)
            else:
                self.run([trial])
        if todo:
            self.run(todo)

    def get(self, values: dict, seed: int) -> Optional[Trial]:
        return self.trials.get((_key(values), seed))

    def ranked(self, seed: int = SEEDS[0]) -> List[dict]:
        """The searched settings (the previous ones excluded) that trained, best valid AUC at ``seed`` first."""
        trials = [t for (k, s), t in self.trials.items() if s == seed and k != _key(self.previous)]
        return [t.values for t in sorted(trials, key=lambda t: -t.score) if t.score > -math.inf]

    def mean_valid(self, values: dict, seeds: Sequence[int]) -> float:
        """The mean of the valid AUCs at ``seeds`` (-inf if one of them failed or collapsed, nan if missing)."""
        trials = [self.get(values, s) for s in seeds]
        return float(np.mean([t.score if t else math.nan for t in trials])) if trials else math.nan

    def search(self) -> Tuple[dict, List[int]]:
        """Run the stages and the confirmation; returns ``(winner, the seeds its choice rests on)``."""
        first = SEEDS[0]
        self.evaluate([(self.previous, first)])
        center = {k: v for k, v in self.previous.items() if k not in SCHEDULE}
        for _, keys in self.stages:
            names = list(keys)
            grid = [dict(zip(names, combo)) for combo in itertools.product(*(keys[n] for n in names))]
            self.evaluate([({**center, **combo, **SCHEDULE}, first) for combo in grid])
            ranked = self.ranked(first)
            if ranked:
                center = {k: v for k, v in ranked[0].items() if k not in SCHEDULE}
        finalists = [self.previous] + self.ranked(first)[:FINALISTS]
        # finalist by finalist, so that a short budget still confirms the best one against the previous settings
        self.evaluate([(values, seed) for values in finalists for seed in SEEDS[1:]])
        confirmed = [v for v in finalists if all(self.get(v, s) for s in SEEDS)]
        if len(confirmed) >= 2 and confirmed[0] is self.previous:
            return max(confirmed, key=lambda v: self.mean_valid(v, SEEDS)), list(SEEDS)
        return max(finalists, key=lambda v: self.mean_valid(v, [first])), [first]


def _searched_keys(stages) -> List[str]:
    return [key for _, keys in stages for key in keys]


def previous_settings(model: str, dataset: Optional[str], config_files, config_dict, stages=STAGES) -> dict:
    """The values of the searched keys and the epoch schedule as a run of ``model`` resolves them today."""
    from recbole_biao.compat import plain_data
    from recbole_biao.quick_start import build_config

    _, config = build_config(model, dataset, config_files, config_dict)
    require_ctr(config, "--tune_lower")
    return {key: plain_data(config[key]) for key in [*_searched_keys(stages), *SCHEDULE]}


def _trial_runner(model, dataset, config_files, config_dict, cache, runner, pool, bar):
    """``run(trials)``: each trial a cached run of ``model`` (with a pool, the new ones in parallel first)."""
    from recbole_biao.experiments.compare import run_one

    def run(trials: List[Trial]) -> None:
        errors = {}
        if pool is not None and len(trials) > 1:
            for seed in sorted({t.seed for t in trials}):
                group = [t for t in trials if t.seed == seed]
                rows = [Row(str(i), model, None, t.values) for i, t in enumerate(group)]
                _, failures = run_rows(rows, [seed], runner, cache, dataset, config_files, config_dict,
                                       progress=False, pool=pool, need_valid=True)
                errors.update((id(group[int(lab)]), error) for lab, _, error in failures)
        for trial in trials:
            if id(trial) in errors:
                trial.error = errors[id(trial)]
            else:
                result, valid = run_one(Row(label(trial.values), model, None, trial.values), trial.seed, runner,
                                        cache, dataset, config_files, config_dict, need_valid=True)
                if result is None:
                    trial.error = valid
                else:
                    trial.valid, trial.test = valid["auc"], result["auc"]
                    trial.collapsed = bool(result.get("collapsed"))
                    trial.still_improving = bool(result.get("still_improving"))
                    trial.best_epoch = result.get("best_epoch")
            bar.update()
            state = ("failed: " + trial.error if trial.error else "collapsed" if trial.collapsed
                     else f"valid AUC {trial.valid:.4f}")
            bar.write(f"  seed {trial.seed}, {label(trial.values)}: {state}")

    return run


def dataset_file(dataset: Optional[str], config_files=None) -> Optional[str]:
    """The properties file that holds the dataset's settings: ``properties/dataset/<dataset>.yaml``, else the
    last of ``config_files`` that names the domains (None if there is none)."""
    import yaml

    if dataset:
        return os.path.join(PROPERTIES_DIR, "dataset", f"{dataset}.yaml")
    for path in reversed(config_files or []):
        with open(path, encoding="utf-8") as f:
            content = yaml.safe_load(f)
        if isinstance(content, dict) and "target_domain" in content:
            return path
    return None


def tune_lower(model: str, dataset: Optional[str] = None, config_files=None, config_dict=None, max_trials: int = 20,
               max_minutes: Optional[float] = None, write: bool = True, pool=None, show_epochs: bool = False,
               out_dir: Optional[str] = None, command: str = "", stages=STAGES, runner=None) -> str:
    """Search the lower level of ``model`` on ``dataset`` and (``write``) record the winner in the dataset's
    properties file; returns the report (also written to ``<out_dir>/<model>-<dataset>.md``, default
    ``log/tune``). ``runner``: trains one spec (default: :func:`run_recbole_biao`; tests pass their own)."""
    from recbole_biao.experiments import parallel
    from recbole_biao.experiments.commands import OUT_DIR
    from recbole_biao.utils import get_model, model_variant

    get_model(model)
    if model_variant(model):
        raise ConfigError(f"--tune_lower: give the model without -S / -0 ('{model.split('-')[0]}'): its settings "
                          f"serve every variant")
    if max_trials < 1:
        raise ConfigError(f"--max_trials: expected an int >= 1, got {max_trials}")
    if max_minutes is not None and not max_minutes > 0:
        raise ConfigError(f"--max_minutes: expected a number > 0, got {max_minutes}")
    dataset = dataset if dataset or config_files else "ml-1m-genres"
    target = dataset_file(dataset, config_files)
    if write and target is None:
        raise ConfigError("--tune_lower writes its result into the dataset's properties file: give --dataset, or "
                          "a --config_files file that names the domains (or --no_write to only report)")
    searched = [key for key in (config_dict or {}) if key in [*_searched_keys(stages), *SCHEDULE]]
    if searched:
        raise ConfigError(f"--tune_lower searches '{searched[0]}'; leave it off the command line")
    previous = previous_settings(model, dataset, config_files, config_dict, stages)
    cache = RunCache(os.path.join(OUT_DIR, "cache"))
    started = time.time()
    deadline = started + 60 * max_minutes if max_minutes else math.inf
    with tqdm(total=max_trials, desc=f"tune {model}", ncols=100) as bar:
        search = Search(previous, _trial_runner(model, dataset, config_files, config_dict, cache,
                                                runner or parallel.runner(show_epochs), pool, bar),
                        max_trials, deadline, stages, parallel=pool is not None)
        winner, seeds = search.search()
    minutes = (time.time() - started) / 60
    return _conclude(search, winner, seeds, model, dataset or os.path.basename(target or "files"),
                     target if write else None, minutes, command, out_dir or os.path.join("log", "tune"))


def _conclude(search: Search, winner: dict, seeds, model, dataset, target, minutes, command, out_dir) -> str:
    gain = search.mean_valid(winner, seeds) - search.mean_valid(search.previous, seeds)
    over = f"mean of seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]}"
    before, after = search.mean_valid(search.previous, seeds), search.mean_valid(winner, seeds)
    lines = [f"# --tune_lower: {model} on {dataset}", "",
             f"`{command or '--tune_lower'}` on {datetime.date.today().isoformat()}: {len(search.trials)} trials in "
             f"{minutes:.1f} min" + (f" ({search.stopped})" if search.stopped else ""),
             "", "| seed | settings | valid AUC | test AUC | best epoch | note |", "|---|---|---|---|---|---|"]
    for trial in sorted(search.trials.values(), key=lambda t: (t.seed, -t.score)):
        notes = ["previous settings"] if _key(trial.values) == _key(search.previous) else []
        notes += [f"failed: {trial.error}"] if trial.error else ["collapsed"] if trial.collapsed else \
            ["still improving"] if trial.still_improving else []
        note = "; ".join(notes)
        valid = "" if trial.valid is None else f"{trial.valid:.4f}"
        test = "" if trial.test is None else f"{trial.test:.4f}"
        lines.append(f"| {trial.seed} | {label(trial.values)} | {valid} | {test} | {trial.best_epoch} | {note} |")
    improved = _key(winner) != _key(search.previous) and not math.isnan(gain) and gain >= MARGIN
    lines.append("")
    if improved:
        lines.append(f"best: {label(winner)}: valid AUC {after:.4f} against {before:.4f} with the previous settings "
                     f"({over})")
    else:
        why = ("the previous settings scored best" if _key(winner) == _key(search.previous)
               else f"the best, {label(winner)}, gains {gain:+.4f} (< {MARGIN})")
        lines.append(f"could not improve on the previous settings ({label(search.previous)}: valid AUC {before:.4f}, "
                     f"{over}): {why}; nothing written")
    if improved and target:
        path, values = target, dict(winner)
        lines += [f"  {note}" for note in overridden_keys(path, model, values)]
        today = datetime.date.today().isoformat()
        write_section(path, model, values, [
            f"{model}: --tune_lower on {today}, {len(search.trials)} trials: valid AUC {after:.4f} ({over}), "
            f"previous settings {before:.4f}", f"  {command}" if command else f"  --model={model} --tune_lower"])
        lines.append(f"written: the per_model section of {model} in {path}")
    elif improved:
        lines.append("not written (--no_write)")
    report = "\n".join(lines)
    os.makedirs(out_dir, exist_ok=True)
    with atomic_path(os.path.join(out_dir, f"{model}-{dataset}.md")) as tmp, \
            open(tmp, "w", encoding="utf-8") as f:
        f.write(report + "\n")
    return report
