"""learner: sparse_adam: LazyAdam against torch's Adam and SparseAdam, the switch in the trainers, its errors."""

import copy
import io

import pytest
import torch
import torch.nn as nn

from recbole_biao import distributed
from recbole_biao.errors import ConfigError
from recbole_biao.quick_start import run_recbole_biao
from recbole_biao.trainer import BIAOTrainer
from recbole_biao.lazy_adam import LazyAdam
from recbole_biao.utils import get_trainer
from tests.helpers import FAST, build_model


class Tiny(nn.Module):
    def __init__(self, sparse):
        super().__init__()
        self.table = nn.Embedding(60, 4, sparse=sparse, padding_idx=0)
        self.head = nn.Linear(4, 1)

    def forward(self, rows):
        return (self.head(self.table(rows)) ** 2).sum()


def train(model, optimizers, batches):
    for rows in batches:
        for optimizer in optimizers:
            optimizer.zero_grad()
        model(rows).backward()
        for optimizer in optimizers:
            optimizer.step()


def batches(count=25, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 40, (30,), generator=g) for _ in range(count)]  # rows 40-59 never used


def test_sparse_rows_follow_sparse_adam_and_dense_parameters_follow_adam():
    torch.manual_seed(0)
    lazy = Tiny(sparse=True)
    reference = copy.deepcopy(lazy)
    untouched = lazy.table.weight[40:].detach().clone()
    train(lazy, [LazyAdam(lazy.parameters(), lr=0.01, betas=(0.8, 0.99), eps=1e-6)], batches())
    train(reference, [torch.optim.SparseAdam(reference.table.parameters(), lr=0.01, betas=(0.8, 0.99), eps=1e-6),
                      torch.optim.Adam(reference.head.parameters(), lr=0.01, betas=(0.8, 0.99), eps=1e-6)], batches())
    for (name, a), b in zip(lazy.named_parameters(), reference.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), name
    assert torch.equal(lazy.table.weight[40:], untouched)  # rows no batch used never move


def test_dense_embedding_gradients_follow_adam_exactly():
    torch.manual_seed(1)
    lazy = Tiny(sparse=False)
    reference = copy.deepcopy(lazy)
    train(lazy, [LazyAdam(lazy.parameters(), lr=0.02)], batches(seed=1))
    train(reference, [torch.optim.Adam(reference.parameters(), lr=0.02)], batches(seed=1))
    for (name, a), b in zip(lazy.named_parameters(), reference.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), name


def test_lazy_rows_stop_where_adam_keeps_moving_them():
    """The difference the switch names: a row used in step 1 but not step 2 moves in step 2 under Adam
    (momentum), and stays under LazyAdam."""
    torch.manual_seed(2)
    first, second = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    for sparse, optimizer_class, moves in ((False, torch.optim.Adam, True), (True, LazyAdam, False)):
        model = Tiny(sparse)
        optimizer = optimizer_class(model.parameters(), lr=0.1)
        train(model, [optimizer], [first])
        after_first = model.table.weight[1:4].detach().clone()
        train(model, [optimizer], [second])
        assert (not torch.equal(model.table.weight[1:4], after_first)) == moves


def test_state_round_trips_through_weights_only_load():
    torch.manual_seed(3)
    model = Tiny(sparse=True)
    optimizer = LazyAdam(model.parameters(), lr=0.01)
    steps = batches(10, seed=3)
    train(model, [optimizer], steps[:5])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    train(model, [optimizer], steps[5:])
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = Tiny(sparse=True)
    resumed.load_state_dict(saved["model"])
    optimizer = LazyAdam(resumed.parameters(), lr=0.01)
    optimizer.load_state_dict(saved["optimizer"])
    train(resumed, [optimizer], steps[5:])
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_the_learner_switches_the_tables_and_the_optimiser(ml1m_loaded):
    config, model, _ = build_model(ml1m_loaded, "MiNet", learner="sparse_adam")
    trainer = get_trainer(None)(config, model)
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    assert isinstance(trainer.optimizer, LazyAdam) and tables and all(t.sparse for t in tables)
    config, model, _ = build_model(ml1m_loaded, "MiNet")
    trainer = get_trainer(None)(config, model)
    assert type(trainer.optimizer) is torch.optim.Adam and not any(
        m.sparse for m in model.modules() if isinstance(m, nn.Embedding))


@pytest.mark.parametrize("method", ["identity", "neumann"])
def test_the_upper_step_differentiates_dense_tables_and_gives_the_same_hypergradient(ml1m_loaded, monkeypatch,
                                                                                      method):
    from recbole_biao.data import data_preparation
    from recbole_biao.biao import upper

    seen, hypergradient = [], upper.implicit_hypergradient
    monkeypatch.setattr(upper, "implicit_hypergradient", lambda *args: seen.append(
        [t.sparse for t in tables]) or hypergradient(*args))
    norms = []
    for learner in ("adam", "sparse_adam"):
        config, model, data = build_model(ml1m_loaded, "CoNet", trainer="BIAO", learner=learner,
                                          hypergrad_method=method, upper_users=64)
        trainer = BIAOTrainer(config, model)
        trainer.upper.bind(data_preparation(config, data)[0])
        tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
        torch.manual_seed(0)
        norms.append(trainer.upper.step()["hypergrad_norm"])
        assert all(t.sparse == (learner == "sparse_adam") for t in tables)  # sparse again for the lower level
    assert seen and not any(any(flags) for flags in seen)  # (dense: measured 2.2x faster there)
    assert norms[0] > 0 and norms[1] == pytest.approx(norms[0], rel=1e-5)


def test_bad_combinations_are_one_line_config_errors(ml1m_loaded, monkeypatch):
    cases = [({"weight_decay": 0.01}, "'weight_decay': learner 'sparse_adam' moves only the rows"),
             ({"clip_grad_norm": {"max_norm": 5}}, "'clip_grad_norm': torch cannot take the norm of sparse")]
    for values, message in cases:
        config, model, _ = build_model(ml1m_loaded, "CoNet", learner="sparse_adam", **values)
        with pytest.raises(ConfigError, match=message):
            get_trainer(None)(config, model)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    config, model, _ = build_model(ml1m_loaded, "CoNet", learner="sparse_adam")
    with pytest.raises(ConfigError, match="'sparse_adam' runs in one process"):
        get_trainer(None)(config, model)


def test_biao_with_sparse_adam_learns_both_levels(ml1m_path, tmp_path):
    values = {**FAST, "data_path": ml1m_path[0], "checkpoint_dir": str(tmp_path), "learner": "sparse_adam"}
    reports = []
    result = run_recbole_biao("MiNet", config_dict=values, trainer="BIAO",
                              trainer_hook=lambda trainer, data: reports.append(trainer))
    assert result["test_result"]["auc"] > 0.7  # (dense Adam: 0.76 after one epoch)
    report = reports[0].upper.probe_report()
    assert report["moved"] > 0.05 and report["correlation"] < 0.99
