"""The CDR model zoo (CMF, CLFM, DTCDR, DeepAPF): scores against independent computations, the contract, variants, learning."""

import numpy as np
import pytest
import torch

from recbole_biao.data import data_preparation
from recbole_biao.errors import ConfigError
from recbole_biao import utils
from recbole_biao.model.abstract import check_contract
from recbole_biao.utils import get_trainer
from tests.helpers import build_model

ZOO = ["CMF", "CLFM", "DTCDR", "DeepAPF"]


def build(ml1m_loaded, model, **values):
    config, model, data = build_model(ml1m_loaded, model, **values)
    train, _, test = data_preparation(config, data)
    return config, model, next(iter(train)), test


def weights(module):
    """``[(W, b)]`` of the linear layers of ``module`` in order, as float64 arrays (b None where bias-free)."""
    return [(m.weight.detach().double().numpy(), None if m.bias is None else m.bias.detach().double().numpy())
            for m in module.modules() if isinstance(m, torch.nn.Linear)]


def dense(x, layers, relu_last=False):
    """``x`` through linear layers with ReLU between them (and after the last if ``relu_last``)."""
    for i, (w, b) in enumerate(layers):
        x = x @ w.T + (0 if b is None else b)
        if i < len(layers) - 1 or relu_last:
            x = np.maximum(x, 0)
    return x


def table(embedding, ids):
    return embedding.weight.detach().double().numpy()[ids]


def rows(batch, domain):
    return (batch[f"{domain}_user_id"].numpy(), batch[f"{domain}_item_id"].numpy(),
            batch[f"{domain}_label"].numpy())


def bce(logits, labels):
    return np.logaddexp(0, logits) - labels * logits


def test_cmf_logit_is_the_shared_user_factor_dot_the_item_factor(ml1m_loaded):
    _, model, batch, _ = build(ml1m_loaded, "CMF", reg_weight=0.01)
    with torch.no_grad():
        model.source_head.bias.fill_(0.3)
        model.target_head.bias.fill_(-0.2)
    users, items = (model.user_factors.weight.detach().numpy().astype(np.float64),
                    model.item_factors.weight.detach().numpy().astype(np.float64))
    logits = {}
    for domain, bias in (("source", 0.3), ("target", -0.2)):
        user, item, label = rows(batch, domain)
        logits[domain] = np.einsum("bd,bd->b", users[user], items[item]) + bias  # one user table for both
        assert np.allclose(model.score(batch, domain).detach().numpy(), logits[domain], atol=1e-5)
        penalty = 0.01 * ((users[user] ** 2).sum(1) + (items[item] ** 2).sum(1))
        assert np.allclose(model.domain_losses(batch, domain).detach().numpy(), bce(logits[domain], label) + penalty,
                           atol=1e-5)
    assert np.allclose(model.predict(batch).detach().numpy(), 1 / (1 + np.exp(-logits["target"])), atol=1e-5)


def test_clfm_logit_is_u_times_the_shared_and_domain_pattern_times_v(ml1m_loaded):
    _, model, batch, _ = build(ml1m_loaded, "CLFM", embedding_size=8, shared_embedding_size=3)
    shared = model.shared_pattern.weight.detach().numpy().T  # S_0: k x 3
    for domain in ("source", "target"):
        pattern = np.concatenate([shared, model.domain_patterns[domain].weight.detach().numpy().T], axis=1)
        assert pattern.shape == (8, 8)
        user, item, _ = rows(batch, domain)
        u = model.users[domain].weight.detach().numpy()[user]
        v = model.items[domain].weight.detach().numpy()[item]
        expected = np.einsum("bk,kl,bl->b", u, pattern, v)
        assert np.allclose(model.score(batch, domain).detach().numpy(), expected, atol=1e-5)


def test_clfm_shares_only_the_first_columns_of_the_pattern(ml1m_loaded):
    """A gradient of the source loss reaches the shared pattern S_0, never the target's own S_t or factors."""
    _, model, batch, _ = build(ml1m_loaded, "CLFM", embedding_size=8, shared_embedding_size=3)
    model.domain_losses(batch, "source").sum().backward()
    assert model.shared_pattern.weight.grad.abs().sum() > 0
    for name in ("domain_patterns", "users", "items"):
        assert getattr(model, name)["target"].weight.grad is None


@pytest.mark.parametrize("combination", ["max", "mean"])
def test_dtcdr_logit_is_neumf_on_the_combined_user(ml1m_loaded, combination):
    _, model, batch, _ = build(ml1m_loaded, "DTCDR", combination=combination)
    model.eval()  # no dropout
    for domain in ("source", "target"):
        user, item, _ = rows(batch, domain)
        u_s, u_t = table(model.users["source"], user), table(model.users["target"], user)
        u = np.maximum(u_s, u_t) if combination == "max" else (u_s + u_t) / 2
        v = table(model.items[domain], item)
        mlp = dense(np.concatenate([u, v], 1), weights(model.mlps[domain]), relu_last=True)
        head = model.source_head if domain == "source" else model.target_head
        expected = dense(np.concatenate([u * v, mlp], 1), weights(head))[:, 0]
        assert np.allclose(model.score(batch, domain).detach().numpy(), expected, atol=1e-5)


def test_deepapf_mixes_the_shared_and_the_domain_interest_by_attention(ml1m_loaded):
    _, model, batch, _ = build(ml1m_loaded, "DeepAPF")
    for domain in ("source", "target"):
        user, item, _ = rows(batch, domain)
        v = table(model.items[domain], item)
        interests = [table(model.shared_users, user), table(model.users[domain], user)]
        logits = np.stack([dense(k * v, weights(model.attention))[:, 0] for k in interests], 1)
        a = np.exp(logits - logits.max(1, keepdims=True))
        a /= a.sum(1, keepdims=True)
        mixed = a[:, :1] * interests[0] + a[:, 1:] * interests[1]
        head = model.source_head if domain == "source" else model.target_head
        expected = dense(mixed * v, weights(head))[:, 0]
        assert np.allclose(model.score(batch, domain).detach().numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("shared", [-1, 9])
def test_clfm_refuses_a_shared_size_outside_the_factor_size(ml1m_loaded, shared):
    with pytest.raises(ConfigError, match="shared_embedding_size"):
        build_model(ml1m_loaded, "CLFM", embedding_size=8, shared_embedding_size=shared)


@pytest.mark.parametrize("model_name", ZOO)
def test_zoo_models_meet_the_contract_and_train_on_both_domains(ml1m_loaded, model_name):
    _, model, batch, _ = build(ml1m_loaded, model_name)
    check_contract(model, "the test")
    target, source = model.calculate_loss(batch)
    assert target.ndim == source.ndim == 0
    assert model.item_embedding(batch["source_item_id"], "source").shape == (len(batch["source_item_id"]),
                                                                           model.embedding_size)
    _, single, batch, _ = build(ml1m_loaded, f"{model_name}-S")
    assert not isinstance(single.calculate_loss(batch), tuple)  # the target loss alone


@pytest.mark.parametrize("model_name", ZOO)
def test_a_short_run_learns(ml1m_loaded, tmp_path, model_name):
    """Two epochs lift the test AUC well above the untrained model's on the same split."""
    config, model, _, test = build(ml1m_loaded, model_name, tmp=tmp_path, train_epochs=["BOTH:2"])
    trainer = get_trainer(None)(config, model)
    untrained = trainer.evaluate(test, load_best_model=False)["auc"]
    train, valid, _ = data_preparation(config, ml1m_loaded[2])
    trainer.fit(train, valid, saved=False)
    trained = trainer.evaluate(test, load_best_model=False)["auc"]
    assert trained > 0.6 and trained > untrained + 0.05, (untrained, trained)


def test_compare_takes_the_zoo_by_its_shorthand_and_labels_each_row_by_its_kind(monkeypatch, tmp_path):
    from recbole_biao.experiments import commands

    trained = []

    def runner(show_epochs):
        def run(spec):
            trained.append((spec["model"], spec["trainer"]))
            return {"test_result": {"auc": 0.6, "logloss": 0.5}, "best_valid_result": {"auc": 0.6}}
        return run

    monkeypatch.setattr(commands, "_runner", runner)
    table = commands.compare("CoNet", seeds=1, baselines=["cdr", "CMF", "MiNet", "CLFM-S", "LR"],
                             out_dir=str(tmp_path))
    labels = [line.split(" | ")[0][2:] for line in table.splitlines() if line.startswith("| ")][1:]
    assert labels[5:] == [f"{m} (cross-domain)" for m in utils.ZOO] + [
        "MiNet (cross-domain)", "CLFM-S (target only)", "LR (RecBole, target only)"]  # CMF once
    assert {m for m, trainer in trained if trainer is None} >= {"CMF", "CLFM", "MiNet", "CLFM-S", "LR"}
