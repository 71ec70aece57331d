"""MiNet and DASL (and the model contract all backbones share): masks, weights, variants, short runs."""

import pytest
import torch

from recbole_biao.data import data_preparation
from recbole_biao.model.layers import AttentionPooling, WordDropout, masked_softmax
from recbole_biao.quick_start import run_recbole_biao
from tests.helpers import FAST, build_model

BACKBONES = ["CoNet", "MiNet", "DASL"]
SHORT = {"history_length": 5}  # shorter histories keep the GRUs of DASL quick in tests


def build(ml1m_loaded, model, **values):
    """A seeded model and one training batch."""
    config, model, data = build_model(ml1m_loaded, model, **{**SHORT, **values})
    train, _, _ = data_preparation(config, data)
    return model, next(iter(train))


def test_masked_softmax_ignores_padding_and_never_gives_nan():
    scores = torch.tensor([[1.0, 2.0, 50.0], [0.3, -1.0, 7.0], [4.0, 4.0, 4.0]])
    mask = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    weights = masked_softmax(scores, mask)
    expected = torch.softmax(torch.tensor([1.0, 2.0]), 0)
    assert torch.allclose(weights[0, :2], expected) and weights[0, 2] == 0
    assert torch.equal(weights[1], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(weights[2], torch.zeros(3))


def test_attention_pooling_padding_changes_nothing():
    torch.manual_seed(0)
    pool = AttentionPooling(6, 8)
    history, query = torch.randn(4, 5, 6), torch.randn(4, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    pooled, weights = pool(history, query, mask)
    assert (weights[~mask] == 0).all() and torch.isfinite(pooled).all()
    assert torch.equal(pooled[2], torch.zeros(6))
    noisy = torch.where(mask[..., None], history, torch.randn(4, 5, 6) * 100)
    assert torch.allclose(pool(noisy, query, mask)[0], pooled, atol=1e-6)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.75])
def test_word_dropout_keeps_each_element_with_probability_one_minus_p_and_rescales(p):
    x = torch.rand(300, 1001) + 1.0  # no zeros of its own; an odd size leaves part of the last word unused
    drop = WordDropout(p)
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    n = x.numel()
    # the kept share within 5 binomial standard deviations of 1 - p, and independent across positions
    sd = (p * (1 - p) / n) ** 0.5
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * sd
    assert abs(kept[:, ::2].float().mean().item() - kept[:, 1::2].float().mean().item()) < 10 * sd
    assert torch.allclose(y[kept], x[kept] / (1 - p))
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # the seeded stream decides the mask
    assert not torch.equal(drop(x), y)
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize("model_name", ["MiNet", "DASL"])
def test_empty_histories_give_finite_probabilities(ml1m_loaded, model_name):
    model, batch = build(ml1m_loaded, model_name)
    for key in list(batch.interaction):
        if "_hist_" in key:
            batch.interaction[key] = torch.zeros_like(batch.interaction[key])
    probabilities = model.predict(batch)
    assert torch.isfinite(probabilities).all()
    assert ((probabilities > 0) & (probabilities < 1)).all()


def test_minet_interest_weights_are_exp_of_the_logits_and_never_overflow(ml1m_loaded):
    model, batch = build(ml1m_loaded, "MiNet")
    user = model.user_embedding(batch["target_user_id"])
    candidate = model.embed_items(batch["target_item_id"], "target")
    interests = [user, user, user]
    with torch.no_grad():
        logits = model.interest_attention(torch.cat([*interests, candidate], dim=-1))
        assert torch.allclose(model.interest_weights(interests, candidate), torch.exp(logits))  # the paper's form
        model.interest_attention[-1].bias.fill_(100.0)  # exp(100) is inf in float32: the clamp at 20 holds
        weights = model.interest_weights(interests, candidate)
    assert weights.shape == (len(user), 3) and torch.isfinite(weights).all()
    assert torch.allclose(weights, torch.full_like(weights, float(torch.exp(torch.tensor(20.0)))))


@pytest.mark.parametrize("model_name", BACKBONES + ["CMF", "CLFM", "DTCDR", "DeepAPF", "BiTGCF"])
def test_single_domain_variants_ignore_source(ml1m_loaded, model_name):
    model, batch = build(ml1m_loaded, f"{model_name}-S")
    model.eval()  # the same predictions twice (no dropout)
    before = model.predict(batch)
    assert ((before > 0) & (before < 1)).all()
    for key in list(batch.interaction):
        if key.startswith("source_") or key.endswith("_hist_source") or key.endswith("_hist_source_len"):
            batch.interaction[key] = torch.zeros_like(batch.interaction[key])
    assert torch.equal(model.predict(batch), before)
    model.calculate_loss(batch).backward()
    touched = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert touched
    assert not [n for n in touched if "source" in n or n.startswith(("cross_", "transfer", "mapping"))]


@pytest.mark.parametrize("model_name", BACKBONES)
def test_zero_variants_have_no_source_loss_gradient(ml1m_loaded, model_name):
    model, batch = build(ml1m_loaded, f"{model_name}-0")
    loss = model.calculate_loss(batch)
    assert not isinstance(loss, tuple)
    loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.source_head.parameters())
    # source features still feed the target prediction: source item embeddings get gradient from it
    assert model.item_tables["source"].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("model_name", BACKBONES)
def test_a_base_backbone_uses_every_parameter_in_a_step(ml1m_loaded, model_name):
    # what lets torchrun's DDP skip its search for unused parameters on these models (the variants need it)
    for name, expect_unused in ((model_name, False), (f"{model_name}-S", True)):
        model, batch = build(ml1m_loaded, name)
        loss = model.calculate_loss(batch)
        sum(loss).backward() if isinstance(loss, tuple) else loss.backward()
        unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert bool(unused) == expect_unused, unused


def untrained_and_trained_auc(model, values, trainer=None):
    """Test AUC of the model as built (seeded) and after its short run, on the same split, as
    ``run_recbole_biao`` builds and trains it."""
    from recbole_biao.quick_start import build_config, prepare_run

    model_class, config = build_config(model, None, None, values, trainer)
    _, (train, valid, test), trainer_obj = prepare_run(model_class, config)
    untrained = trainer_obj.evaluate(test, load_best_model=False)["auc"]
    trainer_obj.fit(train, valid, saved=False)
    return untrained, trainer_obj.evaluate(test, load_best_model=False)["auc"]


@pytest.mark.parametrize("model", ["MiNet", "MiNet-S", "MiNet-0", "DASL", "DASL-S", "DASL-0"])
def test_short_runs_learn(ml1m_path, tmp_path, model):
    """One epoch lifts the test AUC well above the untrained model's (a model that learned nothing, or learned
    from shuffled labels, stays near it)."""
    untrained, trained = untrained_and_trained_auc(model, {**FAST, **SHORT, "data_path": ml1m_path[0],
                                                           "checkpoint_dir": str(tmp_path)})
    assert trained > 0.6 and trained > untrained + 0.05, (untrained, trained)


@pytest.mark.parametrize("model", ["MiNet", "DASL"])
def test_short_biao_runs_learn(ml1m_path, tmp_path, model):
    untrained, trained = untrained_and_trained_auc(model, {
        **FAST, **SHORT, "data_path": ml1m_path[0], "checkpoint_dir": str(tmp_path), "interval": 50,
        "perceptron_history_length": 5, "upper_users": 32}, "BIAO")
    assert trained > 0.6 and trained > untrained + 0.05, (untrained, trained)


def test_a_domain_without_categories_starts_with_every_tower_unit_alive(ml1m_path, ml1m_loaded, tmp_path):
    """Items that all share one category (data without metadata): the category embedding, the same input for every
    behaviour, starts at zero; at Xavier's scale it switched half of CoNet's tower units off for every row."""
    import shutil

    from recbole_biao.data import BiaoDataset, build_cdr_data
    from recbole_biao.quick_start import build_config
    from recbole_biao.utils import init_seed

    for domain in ("source", "target"):
        name = f"ml-1m-genres-{domain}"
        shutil.copytree(f"{ml1m_path[0]}/{name}", tmp_path / name)
        item = tmp_path / name / f"{name}.item"
        lines = item.read_text(encoding="utf-8").splitlines()
        column = lines[0].split("\t").index("category:token")
        rows = [line.split("\t") for line in lines[1:]]
        item.write_text("\n".join([lines[0]] + ["\t".join(r[:column] + ["others"] + r[column + 1:]) for r in rows])
                        + "\n", encoding="utf-8")
    model_class, config = build_config("CoNet-S", "ml-1m-genres", None, {"data_path": str(tmp_path), "state": "ERROR"})
    dataset = BiaoDataset(config)
    assert dataset.num_categories == {"source": 2, "target": 2}
    batch = next(iter(data_preparation(config, build_cdr_data(dataset))[1]))
    for seed in range(2023, 2028):
        init_seed(seed, True)
        model = model_class(config, dataset)
        outputs = []
        hook = model.target_layers[-1].register_forward_hook(lambda module, args, out: outputs.append(out))
        with torch.no_grad():
            model.score(batch, "target")
        hook.remove()
        alive = int((outputs[0] > 0).any(0).sum())
        assert alive >= 7, (seed, alive)  # of 8; with Xavier's category embedding 2-7 (movies-books, 20 seeds)
        assert torch.count_nonzero(model.category_tables["target"].weight) == 0
    _, informative, _ = build_model(ml1m_loaded, "CoNet-S")  # 18 genres: their embeddings keep Xavier's
    assert torch.count_nonzero(informative.category_tables["target"].weight[1:]) > 0
