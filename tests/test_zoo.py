"""The CDR model zoo (CMF, CLFM, DTCDR, DeepAPF, BiTGCF): scores against independent computations, the contract, variants, learning."""

import numpy as np
import pytest
import torch

from recbole_biao.data import data_preparation
from recbole_biao.errors import ConfigError
from recbole_biao import utils
from recbole_biao.model.abstract import check_contract
from recbole_biao.utils import get_trainer
from tests.helpers import build_model, config_for

ZOO = ["CMF", "CLFM", "DTCDR", "DeepAPF", "BiTGCF"]  # joint models (EMCDR: staged, tested below)
STAGED = {"train_epochs": ["SOURCE:1", "TARGET:1", "OVERLAP:1"], "embedding_size": 8}  # EMCDR
# BiTGCF's steps each propagate the whole graph: fewer, larger ones keep its tests short
SMALL = {"BiTGCF": {"embedding_size": 16, "n_layers": 1, "train_batch_size": 2048, "learning_rate": 0.01}}


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
    _, model, batch, _ = build(ml1m_loaded, model_name, **SMALL.get(model_name, {}))
    check_contract(model, "the test")
    target, source = model.calculate_loss(batch)
    assert target.ndim == source.ndim == 0
    assert model.item_embedding(batch["source_item_id"], "source").shape == (len(batch["source_item_id"]),
                                                                           model.embedding_size)
    _, single, batch, _ = build(ml1m_loaded, f"{model_name}-S", **SMALL.get(model_name, {}))
    assert not isinstance(single.calculate_loss(batch), tuple)  # the target loss alone


@pytest.mark.parametrize("model_name", ZOO + ["EMCDR", "NATR", "SSCDR", "DCDCSR"])
def test_a_short_run_learns(ml1m_loaded, tmp_path, model_name):
    """Two epochs (of each stage; one for the staged models that learn in one) lift the test AUC well above the untrained model's on the same split."""
    values = {**SMALL.get(model_name, {}), "train_epochs": ["BOTH:2"]}
    if model_name in ("EMCDR", "NATR", "SSCDR", "DCDCSR"):  # staged
        n = 2 if model_name == "EMCDR" else 1  # (measured: EMCDR 0.55 after one epoch of each stage)
        values = {"train_epochs": [f"SOURCE:{n}", f"TARGET:{n}"] + [f"OVERLAP:{n}"] * (model_name != "NATR")}
        values["train_epochs"] += ["TARGET:1"] * (model_name == "DCDCSR")  # its refit of the items to the map
    config, model, _, test = build(ml1m_loaded, model_name, tmp=tmp_path, **values)
    trainer = get_trainer(None)(config, model)
    untrained = trainer.evaluate(test, load_best_model=False)["auc"]
    train, valid, _ = data_preparation(config, ml1m_loaded[2])
    trainer.fit(train, valid, saved=False)
    trained = trainer.evaluate(test, load_best_model=False)["auc"]
    assert trained > 0.6 and trained > untrained + 0.05, (untrained, trained)


def test_compare_takes_the_zoo_by_its_shorthand_and_labels_each_row_by_its_kind(monkeypatch, tmp_path):
    from recbole_biao.experiments import commands, parallel

    trained = []

    def runner(show_epochs):
        def run(spec):
            trained.append((spec["model"], spec["trainer"]))
            return {"test_result": {"auc": 0.6, "logloss": 0.5}, "best_valid_result": {"auc": 0.6}}
        return run

    monkeypatch.setattr(parallel, "runner", runner)
    table = commands.compare("CoNet", seeds=1, baselines=["cdr", "CMF", "MiNet", "CLFM-S", "LR"],
                             out_dir=str(tmp_path))
    labels = [line.split(" | ")[0][2:] for line in table.splitlines() if line.startswith("| ")][1:]
    assert labels[5:] == [f"{m} (cross-domain)" for m in utils.ZOO] + [
        "MiNet (cross-domain)", "CLFM-S (target only)", "LR (RecBole, target only)"]  # CMF once
    assert {m for m, trainer in trained if trainer is None} >= {"CMF", "CLFM", "MiNet", "CLFM-S", "LR"}


def test_cdr_biao_shorthand_adds_each_joint_zoo_model_under_biao_with_its_control_and_paired_notes(monkeypatch,
                                                                                                    tmp_path):
    from recbole_biao.experiments import commands, parallel

    trained = []

    def runner(show_epochs):
        def run(spec):
            trained.append((spec["model"], spec["trainer"], spec["config"].get("upper_learning_rate")))
            auc = 0.6 + 0.001 * (spec["seed"] % 7) + (0.02 if spec["trainer"] == "BIAO" else 0.0)
            return {"test_result": {"auc": auc, "logloss": 0.5}, "best_valid_result": {"auc": auc}}
        return run

    monkeypatch.setattr(parallel, "runner", runner)
    joint = [m for m in utils.ZOO if "BOTH" in utils.get_model(m).PHASES]
    assert set(joint) == {"CMF", "CLFM", "DTCDR", "DeepAPF", "BiTGCF"}  # the staged four are left out
    table = commands.compare("CoNet", seeds=2, baselines=["CMF", "cdr+BIAO"], out_dir=str(tmp_path))
    for m in joint:
        assert (m, "BIAO", None) in trained and (m, "BIAO", 0.0) in trained
        assert f"| {m}+BIAO (cross-domain, BIAO) |" in table
    assert not any(m in ("EMCDR", "NATR", "SSCDR", "DCDCSR") for m, trainer, _ in trained if trainer == "BIAO")
    # paired against its control and, where it ran, against the model under its own trainer
    assert "CMF+BIAO (cross-domain, BIAO) - CMF+BIAO BIAO upper lr 0 (control):" in table
    assert "CMF+BIAO (cross-domain, BIAO) - CMF (cross-domain): +0.0200 AUC" in table
    assert "CLFM+BIAO (cross-domain, BIAO) - CLFM (" not in table  # CLFM itself was not a row
    with pytest.raises(ConfigError, match="EMCDR trains in stages"):
        commands.compare("CoNet", seeds=1, baselines=["EMCDR+BIAO"], out_dir=str(tmp_path))


def test_bitgcf_adjacency_and_layer_match_dense_matrices_on_a_small_graph():
    from recbole_biao.model.cross_domain_recommender.bitgcf import graph_layer, normalized_adjacency

    users, items = np.array([1, 1, 2, 3, 1]), np.array([0, 2, 2, 1, 0])  # (1, 0) twice: one edge; user 0 alone
    adjacency = normalized_adjacency(users, items, 4, 3)
    a = np.zeros((7, 7))
    for u, i in {(1, 0), (1, 2), (2, 2), (3, 1)}:
        a[u, 4 + i] = a[4 + i, u] = 1
    degree = a.sum(1)
    scale = np.where(degree > 0, degree, 1) ** -0.5
    expected = scale[:, None] * a * scale[None, :]
    assert np.allclose(adjacency.to_dense().numpy(), expected)
    e = np.random.default_rng(0).normal(size=(7, 5))
    side = expected @ e
    out = graph_layer(adjacency, torch.tensor(e, dtype=torch.float32)).numpy()
    assert np.allclose(out, e + side + e * side, atol=1e-5)


def test_bitgcf_propagation_matches_a_scipy_computation_on_the_training_graph_only(ml1m_loaded):
    import scipy.sparse as sp

    config, model, _, _ = build(ml1m_loaded, "BiTGCF", n_layers=2, embedding_size=8)
    data = ml1m_loaded[2]
    model.eval()  # no dropout
    tables = {d: t.detach().numpy() for d, t in model.propagate().items()}
    n_users, n_items = model.total_num_users, model.total_num_items
    size = n_users + n_items
    layers, degrees = {}, {}
    for domain, split in (("source", "train_source"), ("target", "train_target")):
        rows = data.splits[split]
        pos = rows.label > 0
        a = sp.coo_matrix((np.ones(pos.sum()), (rows.user[pos], n_users + rows.item[pos])), shape=(size, size))
        a = ((a + a.T) > 0).astype(np.float64)  # one edge per pair, both ways
        degree = np.asarray(a.sum(1)).ravel()
        scale = sp.diags(np.where(degree > 0, degree, 1) ** -0.5)
        layers[domain] = scale @ a @ scale
        degrees[domain] = degree[:, None]
        held_out = {(u, i) for s in ("valid", "test") for u, i in zip(data.splits[s].user, data.splits[s].item)}
        trained = set(zip(rows.user[pos], rows.item[pos]))
        edges = {(u, i - n_users) for u, i in zip(*a.nonzero()) if u < n_users}
        assert edges == trained and not (edges & held_out - trained)
    e = {d: np.concatenate([model.users[d].weight.detach().numpy(), model.items[d].weight.detach().numpy()])
         for d in ("source", "target")}
    outs = {d: [v] for d, v in e.items()}
    shared = np.zeros((size, 1), dtype=bool)
    shared[1:model.overlapped_num_users] = True
    shared[n_users + 1:n_users + model.overlapped_num_items] = True
    for _ in range(2):
        e = {d: v + layers[d] @ v + v * (layers[d] @ v) for d, v in e.items()}
        by_degree = (degrees["source"] * e["source"] + degrees["target"] * e["target"]) / np.maximum(
            degrees["source"] + degrees["target"], 1e-7)
        e = {"source": np.where(shared, (0.8 * e["source"] + 0.2 * e["target"] + by_degree) / 2, e["source"]),
             "target": np.where(shared, (0.8 * e["target"] + 0.2 * e["source"] + by_degree) / 2, e["target"])}
        for d, v in e.items():
            outs[d].append(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))
    for d in ("source", "target"):  # each graph holds its own domain's nodes, in the global order
        nodes = model.nodes[d].numpy()
        assert np.all(np.diff(nodes) > 0) and tables[d].shape[0] == len(nodes) < size
        assert np.allclose(tables[d], np.concatenate(outs[d], 1)[nodes], atol=1e-4)


def test_bitgcf_refuses_an_id_outside_the_domains_graph(ml1m_loaded):
    _, model, _, _ = build(ml1m_loaded, "BiTGCF", embedding_size=8)
    user, item = torch.tensor([1]), torch.tensor([model.target_num_items - 1])  # a target-only item
    assert item.item() >= model.overlapped_num_items
    users, items = model.graph_rows("target", user, item)
    assert model.nodes["target"][items].item() == model.total_num_users + item.item()  # its own graph row
    with pytest.raises(RuntimeError, match="outside the source domain"):
        model.graph_rows("source", user, item)


def test_bitgcf_evaluation_reuses_one_propagation_until_training_resumes(ml1m_loaded):
    _, model, batch, _ = build(ml1m_loaded, "BiTGCF", embedding_size=8)
    model.eval()
    before = model.predict(batch)
    assert model.propagated_tables() is model.propagated_tables()  # one propagation while evaluating
    model.train()
    with torch.no_grad():
        model.users["target"].weight.mul_(2)
    model.eval()
    assert not torch.allclose(model.predict(batch), before)
    state = model.state_dict()
    state["users.target.weight"] = state["users.target.weight"] / 2
    model.load_state_dict(state)  # still evaluating: the loaded parameters propagate anew
    assert torch.allclose(model.predict(batch), before)


def test_staged_loader_modes_serve_one_domain_or_the_shared_users(ml1m_loaded):
    from recbole_cdr.utils import CrossDomainDataLoaderState as State

    from recbole_biao.data.dataloader import OVERLAP_FIELD

    config, _, data = build_model(ml1m_loaded, "EMCDR", **STAGED)
    train, _, _ = data_preparation(config, data)
    train.set_mode(State.SOURCE)
    seen = np.concatenate([b["source_index"].numpy() for b in train])
    assert sorted(seen) == list(range(len(data.splits["train_source"])))  # one pass over the source rows
    assert not any(k.startswith("target_") for k in next(iter(train)).interaction)
    train.set_mode(State.TARGET)
    assert not any(k.startswith("source_") for k in next(iter(train)).interaction)
    assert len(train) == len(data.splits["train_target"]) // config["train_batch_size"] + 1
    train.set_mode(State.OVERLAP)
    users = np.sort(np.concatenate([b[OVERLAP_FIELD].numpy() for b in train]))
    both = [set(data.splits[s].user[data.splits[s].label > 0]) for s in ("train_source", "train_target")]
    assert list(users) == sorted(both[0] & both[1])


def test_emcdr_maps_fixed_source_factors_onto_target_factors_and_scores_with_them(ml1m_loaded):
    from recbole_biao.data.dataloader import OVERLAP_FIELD

    _, model, batch, _ = build(ml1m_loaded, "EMCDR", **STAGED)
    model.set_phase("OVERLAP")
    users = batch["target_user_id"][:16]
    loss = model.calculate_loss(type(batch)({OVERLAP_FIELD: users}))
    loss.backward()
    assert all(p.grad is not None for p in model.mapping.parameters())
    assert all(t.weight.grad is None for t in (*model.users.values(), *model.items.values()))  # fixed
    with torch.no_grad():
        u_s = model.users["source"].weight[users]
        expected = ((model.mapping(u_s) - model.users["target"].weight[users]) ** 2).sum(1).mean()
        assert torch.allclose(loss, expected)
        mapped = model.mapping(model.users["source"].weight[batch["target_user_id"]])
        item = model.items["target"].weight[batch["target_item_id"]]
        assert torch.allclose(model.predict(batch), torch.sigmoid((mapped * item).sum(1) + model.target_head.bias))
        model.set_phase("TARGET")  # the factorisation stage scores with the target factors
        own = model.users["target"].weight[batch["target_user_id"]]
        assert torch.allclose(model.predict(batch), torch.sigmoid((own * item).sum(1) + model.target_head.bias))


def test_emcdr_stages_and_what_refuses_them(ml1m_path, ml1m_loaded):
    """(SSCDR shares EMCDR's staging: recbole_biao/model/mapping.py.)"""
    from recbole_biao.quick_start import build_config
    from recbole_biao.utils import get_trainer

    # a dataset's joint schedule (movies-books: BOTH:20) becomes one of the same length per stage
    _, config = build_config("EMCDR", "movies-books", None, {"state": "ERROR"})
    assert config["train_epochs"] == ["SOURCE:20", "TARGET:20", "OVERLAP:20"] and not config["source_split"]
    with pytest.raises(ConfigError, match="EMCDR trains in the phases SOURCE, TARGET, OVERLAP, got 'BOTH'"):
        config_for(ml1m_path[0], "EMCDR", train_epochs=["BOTH:2"])  # given explicitly: taken as it is, refused
    config, model, _ = build_model(ml1m_loaded, "EMCDR", **STAGED)
    with pytest.raises(ConfigError, match="trainer BIAO weights each source behaviour of a joint"):
        get_trainer("BIAO")(config, model)
    with pytest.raises(ConfigError, match="EMCDR-S: the staged mapping model has no single-domain variants"):
        build_model(ml1m_loaded, "EMCDR-S", **STAGED)


def test_natr_transfers_the_fixed_source_factors_of_an_items_earlier_training_users(ml1m_loaded):
    config, model, data = build_model(ml1m_loaded, "NATR", embedding_size=8, max_inter_length=5,
                                      train_epochs=["SOURCE:1", "TARGET:1"])
    _, _, test = data_preparation(config, data)
    batch = next(iter(test))[torch.arange(8)]
    users, mask = model.users_before(batch["target_item_id"], batch["target_time"])
    train = data.splits["train_target"]
    for row in range(8):
        item, time = int(batch["target_item_id"][row]), float(batch["target_time"][row])
        earlier = (train.item == item) & (train.label > 0) & (train.time < time)  # training rows only
        time_of = dict(zip(train.user[earlier], train.time[earlier]))  # (one rating per user and movie)
        got = users[row][mask[row]].numpy()
        assert [time_of[u] for u in got] == sorted(train.time[earlier], reverse=True)[:5]  # the latest first
    model.set_phase("TARGET")
    model.calculate_loss(next(iter(data_preparation(config, data)[0]))).backward()
    assert model.users["source"].weight.grad is None  # the source stage's factors stay fixed
    assert model.transfer.weight.grad is not None
    with torch.no_grad():
        p = model.users["target"].weight[batch["target_user_id"]].double().numpy()
        q = model.items["target"].weight[batch["target_item_id"]].double().numpy()
        (wt, bt), (wu, bu), (wd, bd) = (weights(m)[0] for m in (model.transfer, model.unit_attention,
                                                                 model.domain_attention))
        h = model.users["source"].weight.double().numpy()[users.numpy()] @ wt.T + bt
        e = np.maximum(h * p[:, None, :], 0) @ wu.T[:, 0] + bu[0]
        e = np.where(mask.numpy(), e, -np.inf)
        a = np.exp(e - np.where(mask.numpy().any(1, keepdims=True), e.max(1, keepdims=True), 0))
        a = np.where(mask.numpy(), a, 0)
        a = a / np.where(a.sum(1, keepdims=True) > 0, a.sum(1, keepdims=True), 1)
        s = (a[..., None] * h).sum(1)
        b = np.stack([np.maximum(x * p, 0) @ wd.T[:, 0] + bd[0] for x in (s, q)], 1)
        b = np.exp(b - b.max(1, keepdims=True))
        b /= b.sum(1, keepdims=True)
        z = b[:, :1] * s + b[:, 1:] * q
        expected = (z * p).sum(1) + float(model.target_head.bias)
        assert np.allclose(model.score(batch, "target").double().numpy(), expected, atol=1e-5)
    calls = []
    model.transfer.register_forward_hook(lambda *args: calls.append(1))
    model.eval()  # evaluation transfers every user once per pass: the same scores
    with torch.no_grad():
        for _ in range(2):
            assert np.allclose(model.score(batch, "target").double().numpy(), expected, atol=1e-5)
    assert len(calls) == 1
    model.train()
    model.score(batch, "target")
    assert len(calls) == 2


def test_sscdr_scores_by_distance_in_the_unit_ball_and_maps_with_both_signals(ml1m_loaded, monkeypatch):
    from recbole_biao.data.dataloader import OVERLAP_FIELD

    config, model, data = build_model(ml1m_loaded, "SSCDR", **STAGED)
    train = data.splits["train_source"]
    users = np.unique(train.user[train.label > 0])[:40]
    had, had_not = model.draw_items(users, np.random.default_rng(0))
    for u, a, b in zip(users, had, had_not):
        owned = set(train.item[(train.user == u) & (train.label > 0)])
        assert a in owned and b not in owned

    def clip(x):
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1)

    with torch.no_grad():
        model.users["target"].weight.mul_(300)  # some points outside the unit ball
        model.set_phase("TARGET")
        batch = next(iter(data_preparation(config, data)[2]))
        u = model.users["target"].weight[batch["target_user_id"]].double().numpy()
        v = model.items["target"].weight[batch["target_item_id"]].double().numpy()
        expected = -((clip(u) - clip(v)) ** 2).sum(1) + float(model.target_head.bias)
        assert np.allclose(model.score(batch, "target").double().numpy(), expected, atol=1e-5)
    monkeypatch.setattr(model, "draw_items", lambda users, rng: (had, had_not))
    model.set_phase("OVERLAP")
    ids = torch.from_numpy(users)
    loss = model.calculate_loss(type(batch)({OVERLAP_FIELD: ids}))
    with torch.no_grad():
        src, tgt = (model.users[d].weight[ids] for d in ("source", "target"))
        supervised = ((model.mapping(src) - tgt) ** 2).sum(1).mean().item()
        f = [clip(model.mapping(model.items["source"].weight[torch.from_numpy(x)]).double().numpy())
             for x in (had, had_not)]
        anchor = clip(tgt.double().numpy())
        gap = np.linalg.norm(anchor - f[0], axis=1) - np.linalg.norm(anchor - f[1], axis=1)
        triplet = np.maximum(0, 1.0 + gap).mean()
    assert loss.item() == pytest.approx(supervised + 0.25 * triplet, rel=1e-4)


def test_dcdcsr_maps_target_factors_onto_count_weighted_benchmarks(ml1m_loaded):
    from recbole_biao.data.dataloader import OVERLAP_FIELD

    config, model, data = build_model(ml1m_loaded, "DCDCSR", **STAGED)
    users = torch.arange(1, 30)
    n = [np.bincount(data.splits[s].user[data.splits[s].label > 0], minlength=model.total_num_users)[1:30]
         for s in ("train_source", "train_target")]
    with torch.no_grad():
        u_s, u_t = (model.users[d].weight[1:30].double().numpy() for d in ("source", "target"))
        expected = (n[0][:, None] * u_s + n[1][:, None] * u_t) / np.maximum(n[0] + n[1], 1)[:, None]
        assert (n[0] > 0).any() and (n[1] > 0).any() and (n[0] != n[1]).any()
        assert np.allclose(model.benchmark(users).double().numpy(), expected, atol=1e-6)
    model.set_phase("OVERLAP")
    loss = model.calculate_loss(type(next(iter(data_preparation(config, data)[0])))({OVERLAP_FIELD: users}))
    loss.backward()
    assert all(t.weight.grad is None for t in model.users.values())  # the stages' factors stay fixed
    with torch.no_grad():
        mapped = model.mapping(model.users["target"].weight[users]).double().numpy()
    assert loss.item() == pytest.approx(((mapped - expected) ** 2).sum(1).mean(), rel=1e-4)


def test_dcdcsr_last_stage_fits_the_target_items_to_the_fixed_mapped_users(ml1m_loaded):
    config, model, data = build_model(ml1m_loaded, "DCDCSR", **STAGED)
    batch = next(iter(data_preparation(config, data)[2]))  # target rows with labels
    model.set_phase("TARGET")  # the first TARGET stage: the plain target factorisation trains the users
    model.calculate_loss(batch).backward()
    assert model.users["target"].weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model.set_phase("OVERLAP")
    model.set_phase("TARGET")  # after the map: the refit
    loss = model.calculate_loss(batch)
    loss.backward()
    assert all(t.weight.grad is None for t in model.users.values())
    assert all(p.grad is None for p in model.mapping.parameters())  # the map stays as the OVERLAP stage left it
    assert model.items["target"].weight.grad.abs().sum() > 0 and model.target_head.bias.grad is not None
    users, items, labels = rows(batch, "target")
    with torch.no_grad():
        mapped = model.mapping(model.users["target"].weight[torch.from_numpy(users)]).double().numpy()
    u, v = table(model.users["target"], users), table(model.items["target"], items)
    logits = (mapped * v).sum(1) + model.target_head.bias.item()
    expected = bce(logits, labels) + config["reg_weight"] * ((u ** 2).sum(1) + (v ** 2).sum(1))
    assert loss.item() == pytest.approx(expected.mean(), rel=1e-4)
