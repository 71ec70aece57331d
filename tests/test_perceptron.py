"""The behavioural perceptron: attention against torch's, masking, normalisation, ablations, size."""

import pytest
import torch

from recbole_biao.biao.perceptron import BehaviouralPerceptron, PooledSelfAttention


@pytest.fixture(autouse=True)
def torch_formulation(monkeypatch):
    """These tests check the torch formulation (the reference of the native attention, tests/test_native.py)."""
    monkeypatch.setenv("RECBOLE_BIAO_NATIVE", "0")


def histories(seed, batch=6, length=8, dim=10, lengths=None):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths if lengths is not None else [8, 3, 1, 0, 5, 2][:batch])
    mask = torch.arange(length)[None, :] < lengths[:, None]
    out = {}
    for d in ("source", "target"):
        table = torch.randn(12, dim, generator=g)
        out[d] = (table, torch.randint(0, 12, (batch, length), generator=g), mask)
    return torch.randn(batch, dim, generator=g), out


def test_pooled_attention_equals_torch_multihead_attention_then_masked_mean():
    torch.manual_seed(0)
    module = PooledSelfAttention(20, 4)
    item, hist = histories(1)
    table, index, mask = hist["source"]
    out = module(table, index, item, mask)
    x = torch.cat([table[index], item[:, None].expand(-1, index.shape[1], -1)], -1)
    reference, _ = module.attention(x, x, x, key_padding_mask=~mask)
    for row, n in enumerate(mask.sum(1).tolist()):
        expected = reference[row, :n].mean(0) if n else torch.zeros(20)
        assert torch.allclose(out[row], expected, atol=1e-5), row


def test_padding_never_changes_a_weight():
    torch.manual_seed(0)
    perceptron = BehaviouralPerceptron(10)
    item, hist = histories(2)
    before = perceptron.scores(item, hist)
    changed = {}
    for d, (table, index, mask) in hist.items():
        junk = torch.randint(0, 12, index.shape)
        index = torch.where(mask, index, junk)  # other items at padded positions
        wider = torch.cat([index, junk[:, :5]], dim=1)  # and five more padded positions
        changed[d] = (table, wider, torch.cat([mask, torch.zeros(mask.shape[0], 5, dtype=torch.bool)], 1))
    assert torch.allclose(perceptron.scores(item, changed), before, atol=1e-6)


def test_empty_histories_give_finite_weights():
    perceptron = BehaviouralPerceptron(10)
    item, hist = histories(3, lengths=[0, 0, 0, 0, 0, 0])
    weights = perceptron(item, hist)
    assert torch.isfinite(weights).all()


def test_normalisations():
    item, hist = histories(4)
    softmax = BehaviouralPerceptron(10, norm="softmax")
    with torch.no_grad():
        softmax.gamma_raw.fill_(1.7)
    weights = softmax(item, hist)
    assert weights.shape == (6,) and (weights > 0).all()
    assert weights.sum().item() == pytest.approx(1.7, abs=1e-5)
    sigmoid = BehaviouralPerceptron(10, norm="sigmoid")
    weights = sigmoid(item, hist)
    assert ((weights > 0) & (weights < 1.0 / 6)).all()
    with torch.no_grad():
        softmax.gamma_raw.fill_(-0.5)  # gamma = relu(p) never goes negative
    assert (softmax(item, hist) == 0).all()


def test_ablation_switches():
    item, hist = histories(5)
    no_user = BehaviouralPerceptron(10, use_user=False)
    other_hist = histories(6)[1]
    assert not hasattr(no_user, "attention")
    assert torch.equal(no_user.scores(item, hist), no_user.scores(item, other_hist))  # histories ignored
    assert torch.allclose(no_user.scores(item, hist), no_user.global_mlp(item).squeeze(-1))
    no_global = BehaviouralPerceptron(10, use_global=False)
    assert no_global.global_mlp is None
    assert not torch.equal(no_global.scores(item, hist), no_global.scores(item, other_hist))
    with pytest.raises(ValueError, match="cannot both be False"):
        BehaviouralPerceptron(10, use_global=False, use_user=False)


def test_parameter_count_is_quadratic_in_the_embedding_size():
    def count(dim):
        return sum(p.numel() for p in BehaviouralPerceptron(dim, hidden_size=[32, 16]).parameters())
    # no user, item or behaviour count enters the perceptron; its size grows as d^2
    assert 3.5 < count(64) / count(32) < 4.2
    d = 64  # attention size for item embeddings of 32: two MHAs (in/out projections), global linear, MLP, gamma
    expected = 2 * (3 * d * d + 3 * d + d * d + d) + (32 + 1) + (2 * d * 32 + 32 + 32 * 16 + 16 + 16 + 1) + 1
    assert count(32) == expected


def test_score_bound_limits_the_ratio_of_two_weights():
    item, hist = histories(7)
    bounded = BehaviouralPerceptron(10, score_bound=0.5)
    with torch.no_grad():
        bounded.global_mlp.weight.mul_(100.0)  # raw scores far beyond the bound
    raw = BehaviouralPerceptron(10)
    raw.load_state_dict(bounded.state_dict())
    assert raw.scores(item, hist).abs().max() > 5
    scores = raw.scores(item, hist)
    assert torch.equal(bounded.scores(item, hist), scores)  # the bound acts in the normalisation
    expected = torch.softmax(0.5 * torch.tanh((scores - scores.mean()) / 0.5), dim=0)
    weights = bounded(item, hist)
    assert torch.allclose(weights, expected)
    assert (weights.max() / weights.min()).item() <= torch.exp(torch.tensor(1.0)).item() + 1e-5
    assert torch.allclose(bounded.normalise(scores + 100.0), weights)  # blind to a shift, as the softmax


def test_initialisations_for_a_start_at_uniform_weights():
    item, hist = histories(8)
    torch.manual_seed(0)
    perceptron = BehaviouralPerceptron(10, local_bias_init=1.0, global_init_scale=0.01)
    assert perceptron.local_mlp[-1].bias.item() == 1.0 and perceptron.global_mlp.bias.item() == 0.0
    torch.manual_seed(0)
    default = BehaviouralPerceptron(10)
    assert torch.allclose(perceptron.global_mlp.weight, 0.01 * default.global_mlp.weight)
    weights = perceptron(item, hist) * len(item)
    assert (weights - 1).abs().max() < 0.05  # near the Base model's uniform weights
    assert (default(item, hist) * len(item) - 1).abs().max() > 0.05  # which the default start is not


def test_gamma_only_mode_learns_a_global_scale_only():
    item, hist = histories(9)
    perceptron = BehaviouralPerceptron(10, mode="gamma_only")
    assert [n for n, _ in perceptron.named_parameters()] == ["gamma_raw"] and not perceptron.needs_histories
    with torch.no_grad():
        perceptron.gamma_raw.fill_(0.4)
    assert torch.allclose(perceptron(item, None), torch.full((6,), 0.4 / 6))
    with pytest.raises(ValueError, match="perceptron_mode"):
        BehaviouralPerceptron(10, mode="other")


def test_heads_that_do_not_divide_the_attention_size_are_a_config_error():
    from recbole_biao.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'perceptron_heads': expected a divisor of .* size 20, got 3"):
        PooledSelfAttention(20, 3)


# ---- the fast pooled attention against independent computations ---------------------------------------------
def torch_reference(module, table, index, item, mask):
    """masked mean over the valid positions of torch's own multi-head attention on ``x_i = [h_i; e]``."""
    x = torch.cat([table[index], item[:, None].expand(-1, index.shape[1], -1)], -1)
    any_valid = mask.any(1)
    keys = ~(mask | ~any_valid[:, None])  # (a row without valid positions attends everywhere, then is zeroed)
    out, _ = module.attention(x, x, x, key_padding_mask=keys, need_weights=False)
    valid = mask.to(out.dtype)
    return (out * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1) * any_valid[:, None]


def realistic_inputs(seed, batch=512, history=50, embedding=16, items=3000, prefix=True):
    """The lower-step shapes (batch 512, history 50, embedding 16: items of 2 x 16), with history lengths on
    every side of the length groups, empty histories included."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(items, 2 * embedding, generator=g)
    index = torch.randint(0, items, (batch, history), generator=g)
    item = torch.randn(batch, 2 * embedding, generator=g)
    edges = torch.tensor([0, 1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 49, history])
    at_edges = edges[torch.randint(0, len(edges), (batch,), generator=g)]
    lengths = torch.where(torch.rand(batch, generator=g) < 0.5, at_edges,
                          torch.randint(0, history + 1, (batch,), generator=g))
    if prefix:
        mask = torch.arange(history)[None, :] < lengths[:, None]
    else:  # any positions valid, not only a prefix
        mask = torch.rand(batch, history, generator=g) < lengths[:, None] / history
    return table, index, item, mask


@torch.no_grad()
def relative_error(a, b):
    return float((a - b).abs().max() / b.abs().max()) if a.numel() else 0.0


@pytest.mark.parametrize("prefix", [True, False])
def test_pooled_attention_at_lower_step_shapes_equals_torch_attention_within_1e_5(prefix):
    torch.manual_seed(1)
    module = PooledSelfAttention(64, 4)
    table, index, item, mask = realistic_inputs(2, prefix=prefix)
    with torch.no_grad():
        fast = module(table, index, item, mask)
    assert relative_error(fast, torch_reference(module, table, index, item, mask)) < 1e-5
    assert torch.equal(fast[~mask.any(1)], torch.zeros_like(fast[~mask.any(1)]))


def test_pooled_attention_gradients_equal_torch_attention_gradients():
    # the upper step differentiates the perceptron: its parameters' gradients must be torch's too
    torch.manual_seed(6)
    module = PooledSelfAttention(20, 4)
    table, index, item, mask = realistic_inputs(7, batch=40, history=20, embedding=5)
    direction = torch.randn(40, 20)
    grads = []
    for function in (module, lambda *x: torch_reference(module, *x)):
        module.zero_grad()
        (function(table, index, item, mask) * direction).sum().backward()
        grads.append([p.grad.clone() for p in module.parameters()])
    for fast, reference in zip(*grads):
        assert relative_error(fast, reference) < 1e-5


def test_both_domains_together_equal_each_alone():
    from recbole_biao.biao.perceptron import pool_jointly

    torch.manual_seed(8)
    source, target = PooledSelfAttention(64, 4), PooledSelfAttention(64, 4)
    a, b = realistic_inputs(9, batch=300), realistic_inputs(10, batch=300, history=30, items=500)
    with torch.no_grad():
        joint = pool_jointly([source, target], [a, b])
        alone = [source(*a), target(*b)]
    for x, y in zip(joint, alone):
        assert relative_error(x, y) < 1e-6
    assert relative_error(alone[1], torch_reference(target, *b)) < 1e-5  # (the shorter history, padded)


def test_the_gpu_path_equals_torch_attention(monkeypatch):
    # what a GPU runs (one segment with every row, empty histories included; torch's fused attention),
    # here on the CPU
    from recbole_biao.biao import perceptron

    monkeypatch.setattr(perceptron, "on_gpu", lambda device: True)
    torch.manual_seed(15)
    module = PooledSelfAttention(64, 4)
    for prefix in (True, False):
        table, index, item, mask = realistic_inputs(16, batch=200, prefix=prefix)
        with torch.no_grad():
            out = module(table, index, item, mask)
        assert relative_error(out, torch_reference(module, table, index, item, mask)) < 1e-5


def test_reused_scratch_never_leaks_between_passes():
    torch.manual_seed(11)
    module = PooledSelfAttention(64, 4)
    big, small = realistic_inputs(12), realistic_inputs(13, batch=64)
    with torch.no_grad():
        first = module(*small)
        module(*big)  # fills the scratch space with other values
        assert torch.equal(module(*small), first)


def test_distinct_items_equals_torch_unique_by_counting_and_by_sorting():
    from recbole_biao.model.layers import distinct_items

    g = torch.Generator().manual_seed(14)
    for vocabulary in (50, 3000, 10**6):  # counted, counted, sorted
        items = torch.randint(0, vocabulary, (64, 20), generator=g)
        table, index = distinct_items(items, vocabulary)
        expected_table, expected_index = torch.unique(items, return_inverse=True)
        assert torch.equal(table, expected_table) and torch.equal(index, expected_index)
        assert torch.equal(table[index], items)
