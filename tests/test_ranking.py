"""The ranking protocol (eval_args.mode full / uniN): metrics, candidates, ranks against brute force, config."""

import numpy as np
import pytest
import torch

from recbole_biao.data import data_preparation
from recbole_biao.errors import ConfigError
from recbole_biao.evaluation import ranking_metrics
from recbole_biao.model.abstract import CrossDomainCTRRecommender
from recbole_biao.quick_start import run_recbole_biao
from recbole_biao.trainer.ranking import draw_candidates, rank_queries
from tests.helpers import FAST, build_model, config_for

RANKING = {"eval_args": {"mode": "full"}, "metrics": ["Recall", "NDCG", "MRR", "Hit"], "topk": [1, 10],
           "valid_metric": "NDCG@10"}


def test_ranking_metrics_follow_their_definitions():
    ranks = [1, 3, 11, 10]
    out = ranking_metrics(ranks, ["recall", "ndcg", "mrr", "hit"], [1, 10], decimals=8)
    assert out["recall@10"] == out["hit@10"] == 0.75 and out["recall@1"] == 0.25
    assert out["ndcg@10"] == pytest.approx((1 + 1 / np.log2(4) + 1 / np.log2(11)) / 4, abs=1e-8)
    assert out["mrr@10"] == pytest.approx((1 + 1 / 3 + 1 / 10) / 4, abs=1e-8)
    assert out["ndcg@1"] == out["mrr@1"] == 0.25


def test_ranking_metrics_with_several_held_out_items_per_user_equal_recboles_own():
    """Users with several held-out items (RecBole's ratio split): the per-user metrics equal RecBole's metric
    classes on the top-K hit matrix that those ranks give."""
    from recbole.evaluator import metrics as recbole_metrics

    rng = np.random.default_rng(0)
    users, ranks = [], []
    for user in range(40):  # distinct ranks per user: a list has one item per position
        count = int(rng.integers(1, 6))
        users += [user] * count
        ranks += sorted(rng.choice(np.arange(1, 30), size=count, replace=False).tolist())
    users, ranks = np.array(users), np.array(ranks)
    k = 10
    ours = ranking_metrics(ranks, ["recall", "ndcg", "mrr", "hit"], [k], users=users, decimals=10)
    pos_index = np.zeros((40, k), dtype=bool)
    for user, rank in zip(users, ranks):
        if rank <= k:
            pos_index[user, rank - 1] = True
    pos_len = np.bincount(users, minlength=40)
    config = {"topk": [k], "metric_decimal_place": 10}
    theirs = {"recall": recbole_metrics.Recall(config).metric_info(pos_index, pos_len),
              "ndcg": recbole_metrics.NDCG(config).metric_info(pos_index, pos_len),
              "mrr": recbole_metrics.MRR(config).metric_info(pos_index),
              "hit": recbole_metrics.Hit(config).metric_info(pos_index)}
    for name, values in theirs.items():
        assert ours[f"{name}@{k}"] == pytest.approx(values[:, k - 1].mean(), abs=1e-9), name
    # one rank per user is the leave-one-out case: grouping changes nothing
    single = ranking_metrics(ranks, ["ndcg"], [k], decimals=10)
    assert single == ranking_metrics(ranks, ["ndcg"], [k], users=np.arange(len(ranks)), decimals=10)
    assert single["ndcg@10"] != ours["ndcg@10"]


def test_uniform_candidates_are_the_item_then_unknown_items_and_repeat_with_the_seed():
    known = np.array([1 * 100 + 2, 1 * 100 + 3, 2 * 100 + 5])
    users, positives = np.array([1, 2, 1]), np.array([4, 6, 7])
    a = draw_candidates(users, positives, known, num_items=9, bound=100, negatives=5, seed=3)
    assert a.shape == (3, 6) and (a[:, 0] == positives).all()
    for user, row in zip(users, a):
        drawn = row[1:]
        assert not np.isin(user * 100 + drawn, known).any() and (drawn != row[0]).all()
        assert ((drawn >= 1) & (drawn < 9)).all()
    assert (draw_candidates(users, positives, known, 9, 100, 5, seed=3) == a).all()


@pytest.mark.parametrize("model_name", ["CoNet", "CMF", "SSCDR", "DCDCSR", "BiTGCF", "DTCDR"])
def test_candidate_scores_equal_scoring_each_candidate_as_a_row(ml1m_loaded, model_name):
    """The base class's row-per-candidate scores are the reference for the models' own (batched) versions."""
    staged = {"train_epochs": ["SOURCE:1", "TARGET:1", "OVERLAP:1"]} if model_name in ("SSCDR", "DCDCSR") else {}
    config, model, data = build_model(ml1m_loaded, model_name, embedding_size=8, **staged)
    model.eval()
    _, _, test = data_preparation(config, data)
    batch = next(iter(test))[torch.arange(6)]
    items = torch.randint(1, model.target_num_items, (6, 7), generator=torch.Generator().manual_seed(0))
    got = model.candidate_scores(batch, items)
    for c in range(7):
        row = batch[torch.arange(6)]
        row.update(type(batch)({"target_item_id": items[:, c]}))
        assert torch.allclose(got[:, c], model.score(row, "target"), atol=1e-5)
    assert torch.allclose(got, CrossDomainCTRRecommender.candidate_scores(model, batch, items), atol=1e-5)
    shared = items[0]  # one row of candidates for every query
    assert torch.allclose(model.candidate_scores(batch, shared), model.candidate_scores(batch, shared.expand(6, -1)),
                          atol=1e-5)


def test_full_sort_ranks_match_a_brute_force_ranking_without_the_known_items(ml1m_loaded):
    config, model, data = build_model(ml1m_loaded, "CMF", embedding_size=8)
    model.eval()
    _, _, test = data_preparation(config, data)
    ranks, spread = rank_queries(model, test, 0, torch.device("cpu"))
    rows = data.splits["test"]
    queries = np.flatnonzero(rows.label > 0)
    assert len(ranks) == len(queries) and spread > 0
    train, valid = data.splits["train_target"], data.splits["valid"]
    items = torch.arange(1, model.target_num_items)
    for q in queries[:25]:
        user, item = int(rows.user[q]), int(rows.item[q])
        with torch.no_grad():
            users = torch.full_like(items, user)
            scores = (model.user_factors(users) * model.item_factors(items)).sum(1).numpy()
        seen = set(train.item[(train.user == user) & (train.label > 0)]) | set(
            valid.item[(valid.user == user) & (valid.label > 0)])
        mine = scores[item - 1]
        others = [s for i, s in zip(items.numpy(), scores) if i != item and i not in seen]
        assert ranks[list(queries).index(q)] == 1 + sum(s >= mine for s in others)
    # CMF scores a large chunk of queries at once; three queries a chunk (the known items of each chunk's
    # users masked apart) give the same ranks
    model.CANDIDATE_SCORES_PER_CALL = 3 * (model.target_num_items - 1)
    assert np.array_equal(rank_queries(model, test, 0, torch.device("cpu"))[0], ranks)


def test_a_constant_model_ranks_its_items_last(ml1m_loaded):
    config, model, data = build_model(ml1m_loaded, "CMF", embedding_size=8)
    _, _, test = data_preparation(config, data)
    with torch.no_grad():
        model.user_factors.weight.zero_()
    model.eval()
    ranks, spread = rank_queries(model, test, 5, torch.device("cpu"))
    assert spread == 0 and (ranks == 6).all()


@pytest.mark.parametrize("values, message", [
    ({"eval_args": {"mode": "full"}, "metrics": ["AUC"], "valid_metric": "AUC"}, "'metrics'"),
    ({**RANKING, "valid_metric": "AUC"}, "'valid_metric': expected one of"),
    ({**RANKING, "topk": [0]}, "topk"),
    ({"eval_args": {"mode": "pop100"}}, "eval_args.mode"),
    ({"metrics": ["Recall"], "topk": [10]}, "'metrics'"),
])
def test_metrics_that_do_not_fit_the_protocol_are_one_line_errors(ml1m_path, values, message):
    with pytest.raises(ConfigError, match=message):
        config_for(ml1m_path[0], "CMF", **values)


def test_the_ranking_switch_changes_what_a_run_reports(ml1m_path, tmp_path):
    common = {**FAST, "data_path": ml1m_path[0], "checkpoint_dir": str(tmp_path)}
    ctr = run_recbole_biao("CMF", config_dict=common)
    ranked = run_recbole_biao("CMF", config_dict={**common, **RANKING})
    assert set(ctr["test_result"]) == {"auc", "logloss"}
    assert set(ranked["test_result"]) == {f"{m}@{k}" for m in ("recall", "ndcg", "mrr", "hit") for k in (1, 10)}
    assert set(ranked["best_valid_result"]) == set(ranked["test_result"])
    assert 0 < ranked["test_result"]["ndcg@10"] <= ranked["test_result"]["recall@10"] <= 1


def test_commands_that_decide_by_auc_refuse_the_ranking_protocol(tmp_path):
    from recbole_biao.experiments import commands
    from recbole_biao.experiments.tuning import previous_settings

    with pytest.raises(ConfigError, match="--compare decides by target AUC"):
        commands.compare("CMF", seeds=1, config_dict=RANKING, out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="--tune_lower decides by target AUC"):
        previous_settings("CMF", None, None, RANKING)


def test_a_recbole_baseline_ranks_by_its_click_probabilities(ml1m_loaded):
    config, model, data = build_model(ml1m_loaded, "DeepFM")
    model.eval()
    _, _, test = data_preparation(config, data)
    batch = next(iter(test))[torch.arange(4)]
    items = torch.randint(1, 50, (4, 3), generator=torch.Generator().manual_seed(1))
    got = model.candidate_scores(batch, items)
    for c in range(3):
        row = batch[torch.arange(4)]
        row.update(type(batch)({"target_item_id": items[:, c]}))
        assert torch.allclose(got[:, c], model.predict(row), atol=1e-6)
