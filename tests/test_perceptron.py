"""The behavioural perceptron: attention against torch's, masking, normalisation, ablations, size."""

import pytest
import torch

from recbole_biao.model.perceptron import BehaviouralPerceptron, PooledSelfAttention


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
