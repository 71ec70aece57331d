"""recbole-biao's command line as a RecBole-style script (the installed console command ``recbole-biao`` is the
same): ``python run_recbole_biao.py --model=MiNet --trainer=BIAO``; ``--help`` lists the rest."""

import sys

from recbole_biao.cli import build_parser, main, parse_overrides  # noqa: F401  (the script's names, as before)

if __name__ == "__main__":
    sys.exit(main())
