"""BIAO beyond the lower-level trainer: learn-then-select (:mod:`recbole_biao.biao.selection`)."""
