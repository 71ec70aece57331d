"""The perceptron's native lower-step attention: equal to torch's, switchable, built safely, and a fallback."""

import logging
import os

import pytest
import torch

from recbole_biao.biao import native, perceptron
from recbole_biao.biao.perceptron import PooledSelfAttention
from tests.test_perceptron import realistic_inputs, relative_error, torch_reference

needs_compiler = pytest.mark.skipif(native.compiler() is None, reason="no C++ compiler on this machine")


@pytest.fixture
def calls(monkeypatch):
    """Counts of the two formulations actually run: ``{"native": n, "torch": n}``."""
    counts = {"native": 0, "torch": 0}
    real_native, real_torch = native.pooled_attention, perceptron.pool_torch

    def counted_native(*args):
        out = real_native(*args)
        counts["native"] += out is not None
        return out

    def counted_torch(*args):
        counts["torch"] += 1
        return real_torch(*args)

    monkeypatch.setattr(native, "pooled_attention", counted_native)
    monkeypatch.setattr(perceptron, "pool_torch", counted_torch)
    return counts


def both_formulations(module, inputs, monkeypatch):
    """``(native, torch)`` outputs of ``module(*inputs)`` without autograd."""
    outputs = []
    for switch in ("1", "0"):
        monkeypatch.setenv("RECBOLE_BIAO_NATIVE", switch)
        with torch.no_grad():
            outputs.append(module(*inputs))
    return outputs


@needs_compiler
@pytest.mark.parametrize("dim,heads", [(64, 4), (32, 4), (64, 2), (48, 4), (64, 1)])  # head sizes 16, 8, 32, 12, 64
@pytest.mark.parametrize("prefix", [True, False])
def test_native_attention_equals_torch_attention_within_1e_5(dim, heads, prefix, monkeypatch, calls):
    torch.manual_seed(dim + heads)
    module = PooledSelfAttention(dim, heads)
    inputs = realistic_inputs(dim * heads + prefix, batch=300, embedding=dim // 4, prefix=prefix)
    fast, formulated = both_formulations(module, inputs, monkeypatch)
    assert calls == {"native": 1, "torch": 1}
    assert relative_error(fast, formulated) < 1e-5
    assert relative_error(fast, torch_reference(module, *inputs)) < 1e-5
    empty = ~inputs[3].any(1)
    assert empty.any() and torch.equal(fast[empty], torch.zeros_like(fast[empty]))


@needs_compiler
def test_native_attention_at_its_longest_history_and_beyond(monkeypatch, calls):
    torch.manual_seed(20)
    module = PooledSelfAttention(32, 4)
    limit = native.library() and native.limits()[0]
    for history, expected in ((limit, {"native": 1, "torch": 0}), (limit + 1, {"native": 0, "torch": 1})):
        calls.update(native=0, torch=0)
        inputs = realistic_inputs(21, batch=40, history=history, embedding=8)
        with torch.no_grad():
            out = module(*inputs)
        assert calls == expected, history
        assert relative_error(out, torch_reference(module, *inputs)) < 1e-5


@needs_compiler
def test_the_switch_and_autograd_choose_the_formulation(monkeypatch, calls):
    torch.manual_seed(22)
    module = PooledSelfAttention(64, 4)
    inputs = realistic_inputs(23, batch=64)
    monkeypatch.setenv("RECBOLE_BIAO_NATIVE", "0")
    with torch.no_grad():
        module(*inputs)
    assert calls == {"native": 0, "torch": 1}
    monkeypatch.setenv("RECBOLE_BIAO_NATIVE", "1")
    with torch.no_grad():
        module(*inputs)
    assert calls == {"native": 1, "torch": 1}
    module(*inputs).sum().backward()  # the upper step: parameters need gradients, so torch's formulation
    assert calls == {"native": 1, "torch": 2}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.attention.parameters())


@needs_compiler
def test_native_attention_does_not_depend_on_the_thread_count():
    torch.manual_seed(24)
    module = PooledSelfAttention(64, 4)
    inputs = realistic_inputs(25)
    threads = torch.get_num_threads()
    outputs = []
    try:
        for count in (1, 3):
            torch.set_num_threads(count)
            with torch.no_grad():
                outputs.append(module(*inputs))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(*outputs)


@needs_compiler
def test_an_index_outside_the_table_is_an_error_not_a_crash():
    q = torch.randn(10 * 4, 16)
    index = torch.tensor([[0, 3, 10]])
    with pytest.raises(IndexError, match="outside the item table of 10 rows"):
        native.pooled_attention(q, q, q, index, torch.ones(1, 3, dtype=torch.bool), torch.zeros(1, 4, 16), 4)


@pytest.fixture
def fresh_library():
    """The test finds, builds or loads the library anew; later tests load the process's own again."""
    native.reset()
    yield
    native.reset()


@needs_compiler
def test_the_library_is_built_under_a_temporary_name_and_reused(tmp_path, monkeypatch, fresh_library):
    monkeypatch.setenv("RECBOLE_BIAO_CACHE", str(tmp_path))
    stale = tmp_path / "pooled_attention-0000.so.abcd.tmp"  # what an interrupted build leaves
    stale.write_bytes(b"half a library")
    lib = native.library()
    built = [p for p in tmp_path.iterdir() if p != stale]
    assert lib is not None and len(built) == 1 and built[0].suffix == ".so"
    assert built[0].name.startswith("pooled_attention-") and os.path.samefile(lib._name, built[0])
    modified = built[0].stat().st_mtime_ns
    native.reset()
    assert native.library() is not None and built[0].stat().st_mtime_ns == modified  # loaded, not rebuilt
    assert sorted(tmp_path.iterdir()) == sorted([stale, built[0]])


@pytest.mark.parametrize("compiler", ["false", None])  # a compiler that fails; none at all
def test_without_a_working_compiler_the_torch_formulation_runs(compiler, tmp_path, monkeypatch, caplog, calls,
                                                               fresh_library):
    monkeypatch.setenv("RECBOLE_BIAO_CACHE", str(tmp_path))
    if compiler:
        monkeypatch.setenv("CXX", compiler)
    else:
        monkeypatch.setattr(native, "compiler", lambda: None)
    torch.manual_seed(26)
    module = PooledSelfAttention(64, 4)
    inputs = realistic_inputs(27, batch=64)
    with caplog.at_level(logging.WARNING), torch.no_grad():
        out = module(*inputs)
        module(*inputs)
    assert calls == {"native": 0, "torch": 2}
    warnings = [r.getMessage() for r in caplog.records if "native attention is unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]  # once, one line
    assert ("failed on pooled_attention.cpp" if compiler else "no C++ compiler") in warnings[0]
    assert native.describe().startswith("torch (")
    assert list(tmp_path.iterdir()) == []  # nothing half-built left behind
    assert relative_error(out, torch_reference(module, *inputs)) < 1e-5
