"""Data-parallel training (torchrun, gloo on this CPU): sharding, identical ranks, the single-process result."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from recbole_biao.data.dataloader import TrainDataLoader
from recbole_biao.errors import ConfigError, DataError
from recbole_biao.quick_start import run_recbole_biao
from tests.helpers import FAST

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def epoch_rows(loader):
    """Per batch: (target indices, source indices) of one epoch."""
    return [(b["target_index"].numpy(), b["source_index"].numpy()) for b in loader]


@pytest.mark.parametrize("pairing", ["stream", "same_user"])
def test_ranks_share_every_batch_without_overlap(ml1m_loaded, pairing):
    data = ml1m_loaded[2]
    n = len(data.splits["train_target"])
    batch = 512 if n % 512 >= 2 else 510  # a last, partial batch
    make = lambda rank, world: TrainDataLoader(data, batch, 5, seed=3, pairing=pairing, rank=rank, world_size=world)
    single, ranks = make(0, 1), [make(r, 2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    whole, parts = epoch_rows(single), [epoch_rows(r) for r in ranks]
    for b, (target, source) in enumerate(whole):
        (t0, s0), (t1, s1) = parts[0][b], parts[1][b]
        assert abs(len(t0) - len(t1)) <= 1 and len(t0) + len(t1) == len(target)
        assert np.array_equal(np.concatenate([t0, t1]), target)  # the single process's batch, split in two
        if pairing == "stream":
            assert np.array_equal(np.concatenate([s0, s1]), source)
        else:  # each rank's source rows belong to its own target rows' users
            users = data.splits["train_target"].user
            assert set(data.splits["train_source"].user[s0]) <= set(users[t0])
    assert sorted(np.concatenate([t for p in parts for t, _ in p])) == list(range(n))


def test_a_last_batch_smaller_than_the_world_joins_the_one_before(ml1m_loaded):
    n, batch = 3 * 64 + 1, 64  # one row left over: it cannot go to 2 ranks
    data = ml1m_loaded[2].with_subsets("train_target", {"part": np.arange(n)})
    loaders = [TrainDataLoader(data, batch, 5, target_split="part", rank=r, world_size=2) for r in range(2)]
    assert len(loaders[0]) == 3 == len(TrainDataLoader(data, batch, 5, target_split="part")) - 1
    rows = [np.concatenate([b["target_index"].numpy() for b in loader]) for loader in loaders]
    assert sorted(np.concatenate(rows)) == list(range(n))


def test_a_world_that_cannot_share_the_batches_is_one_line(ml1m_loaded):
    with pytest.raises(ConfigError, match=r"'train_batch_size': 511 does not split evenly over 2 processes"):
        TrainDataLoader(ml1m_loaded[2], 511, 5, world_size=2)


def test_resume_needs_the_same_world_size(ml1m_path, tmp_path):
    values = {**FAST, "data_path": ml1m_path[0], "checkpoint_dir": str(tmp_path)}
    run_recbole_biao("CoNet", config_dict=values)
    last = next(tmp_path.glob("*-last.pth"))
    state = torch.load(last, weights_only=True)
    assert state["world_size"] == 1
    state["world_size"] = 2
    torch.save(state, last)
    with pytest.raises(DataError, match=r"saved by 2 process\(es\), this run has 1; resume with the same torchrun"):
        run_recbole_biao("CoNet", config_dict=values, resume=str(last))


def torchrun(out, data_path, *args):
    """The test worker on 2 gloo processes; returns both ranks' final states."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               os.path.join(REPO, "tests", "distributed_worker.py"), str(out), data_path, "MiNet", *args]
    done = subprocess.run(command, cwd=out, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.distributed
def test_two_gloo_ranks_end_identical_and_match_one_process(ml1m_path, tmp_path):
    """torchrun, 2 processes, 1 epoch of MiNet + BIAO: DDP keeps the models identical, the averaged
    hypergradients keep the perceptrons identical although each rank draws its own upper-level batches, and
    the test AUC is that of one process with the same total batch (within 0.01)."""
    ranks = torchrun(tmp_path, ml1m_path[0], "1", "", "--state=INFO")
    assert ranks[0]["upper_steps"] == ranks[1]["upper_steps"] > 0
    logs = "".join(p.read_text() for p in (tmp_path / "log" / "MiNet").glob("*.log"))
    assert "torchrun: 2 processes joined, backend gloo" in logs  # (rank 0's log)
    for part in ("model", "perceptron"):
        for key, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][key]), f"{part}.{key} differs between the ranks"
    assert not torch.equal(ranks[0]["rows"], ranks[1]["rows"])  # each trained on its own share
    assert ranks[1]["test"] is None and len(list((tmp_path / "saved").glob("*.pth"))) == 2  # rank 0 writes
    single = run_recbole_biao("MiNet", trainer="BIAO", config_dict={**FAST, "data_path": ml1m_path[0],
                                                                    "checkpoint_dir": str(tmp_path / "one")})
    assert abs(ranks[0]["test"]["auc"] - single["test_result"]["auc"]) < 0.01


@pytest.mark.distributed
def test_a_two_rank_run_resumes_where_it_stopped(ml1m_path, tmp_path):
    """2 epochs straight, and 1 epoch then --resume for the second, on 2 ranks: the same models and perceptrons
    (each rank's random state and upper-level streams are restored, not rank 0's)."""
    for name in ("straight", "stopped"):
        (tmp_path / name).mkdir()
    # fewer, larger steps and short histories: the test is about the state, not the model
    fast = ("--train_batch_size=2048", "--history_length=5", "--perceptron_history_length=5", "--upper_users=32")
    straight = torchrun(tmp_path / "straight", ml1m_path[0], "2", "", *fast)
    torchrun(tmp_path / "stopped", ml1m_path[0], "1", "", *fast)
    last = next((tmp_path / "stopped" / "saved").glob("*-last.pth"))
    assert torch.load(last, weights_only=True)["world_size"] == 2
    resumed = torchrun(tmp_path / "stopped", ml1m_path[0], "2", str(last), *fast)
    assert resumed[0]["upper_steps"] == straight[0]["upper_steps"] > 0
    for part in ("model", "perceptron"):
        for key, value in straight[0][part].items():
            assert torch.equal(value, resumed[0][part][key]), f"{part}.{key} differs after the resume"
    assert straight[0]["test"] == resumed[0]["test"]


@pytest.mark.distributed
def test_compare_on_two_ray_workers_gives_the_serial_table(ml1m_path, tmp_path):
    """The same table and the same cache entries as the serial command run with the workers' one thread per
    run (torch's float sums depend on the thread count: 2 threads move LogLoss in the 4th decimal here)."""
    import ray

    from recbole_biao.experiments import commands, parallel
    from recbole_biao.experiments.parallel import make_pool

    # (a cheaper upper level: the test compares two schedules of the same runs, not what they learn)
    values = {**FAST, "data_path": ml1m_path[0], "checkpoint_dir": str(tmp_path / "saved"), "interval": 20,
              "perceptron_history_length": 5, "upper_users": 32}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = commands.compare("CoNet", seeds=1, config_dict=values, out_dir=str(tmp_path / "serial"))
    finally:
        torch.set_num_threads(threads)
    try:
        pool = make_pool(2, None)
        assert pool.threads == max(1, (os.cpu_count() or 1) // 2)
        fanned = commands.compare("CoNet", seeds=1, config_dict=values, out_dir=str(tmp_path / "ray"), pool=pool)
    finally:
        ray.shutdown()
    assert fanned == serial
    names = [sorted(p.name for p in (tmp_path / d / "cache").glob("*.json")) for d in ("serial", "ray")]
    assert names[0] == names[1] and len(names[0]) == 5  # Base-S, Base-0, Base, BIAO, control


def test_a_failed_run_is_reported_and_the_others_go_on(tmp_path):
    from recbole_biao.experiments import commands, parallel

    class Pool:  # what RayPool.map reports, without Ray: the BIAO run fails
        def map(self, specs, label=str, finished=None):
            out = [{"error": "RuntimeError: out of memory"} if s["trainer"] == "BIAO" else
                   {"test_result": {"auc": 0.6 + s["seed"] % 7 / 100, "logloss": 0.5}} for s in specs]
            for i, result in enumerate(out):
                finished(i, result)
            return out

    table = commands.compare("CoNet", seeds=2, out_dir=str(tmp_path), pool=Pool())
    assert "failed: CoNet+BIAO, seed 2023: RuntimeError: out of memory" in table
    assert "failed: CoNet+BIAO, seed 2024: RuntimeError: out of memory" in table
    assert "| CoNet | 0.6" in table and "| CoNet+BIAO | nan |" in table


def test_an_interrupted_fan_out_keeps_the_runs_that_ended(tmp_path):
    from recbole_biao.experiments import commands, parallel

    class Pool:  # two runs end, then the driver is interrupted
        def map(self, specs, label=str, finished=None):
            for i in range(2):
                finished(i, {"test_result": {"auc": 0.6, "logloss": 0.5}})
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        commands.compare("CoNet", seeds=1, out_dir=str(tmp_path), pool=Pool())
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2


def test_workers_without_ray_is_one_line(monkeypatch):
    from recbole_biao.experiments.parallel import make_pool

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"--workers / --ray_address need Ray: pip install '.\[ray\]'"):
        make_pool(2, None)
    assert make_pool(None, None) is None  # the serial path needs no Ray


def test_an_unreachable_ray_cluster_is_one_line(monkeypatch):
    import types

    from recbole_biao.experiments.parallel import make_pool

    def init(**kwargs):
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379\n(more lines)")

    fake = types.SimpleNamespace(is_initialized=lambda: False, init=init)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr("recbole_biao.experiments.parallel.probe_address", lambda address: None)
    with pytest.raises(ConfigError, match=r"^could not start or reach the Ray cluster at '10.0.0.1:6379': "
                                          r"Failed to connect to Ray cluster at 10.0.0.1:6379$"):
        make_pool(None, "10.0.0.1:6379")


@pytest.mark.parametrize("address, reason", [("closed", "Connection refused"),
                                             ("no-such-host.invalid:6379", "could not start or reach"),
                                             ("nonsense", "expected host:port")])
def test_an_address_nobody_answers_at_fails_in_seconds_before_ray_starts(monkeypatch, address, reason):
    import socket
    import time
    import types

    from recbole_biao.experiments.parallel import make_pool

    def init(**kwargs):
        raise AssertionError("ray.init must not be reached")

    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: False, init=init))
    if address == "closed":  # a local port nothing listens on
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{s.getsockname()[1]}"
    started = time.time()
    with pytest.raises(ConfigError, match=reason):
        make_pool(None, address)
    assert time.time() - started < 15


def test_a_random_search_fans_out_and_then_reads_the_cache(monkeypatch, tmp_path):
    from recbole_biao.experiments import parallel
    from recbole_biao.experiments.hyper import tune
    from recbole_biao.experiments.parallel import run_safely

    calls = []

    def runner(show_epochs):
        def run(spec):
            calls.append(dict(spec["config"]))
            if spec["config"]["interval"] == 500:
                raise RuntimeError("diverged")
            valid = 0.7 + spec["config"]["learning_rate"]
            return {"test_result": {"auc": valid, "logloss": 0.5}, "best_valid_result": {"auc": valid}}
        return run

    class Pool:  # runs the specs in this process, as a Ray worker would
        batches = []

        def map(self, specs, label=str, finished=None):
            self.batches.append(len(specs))
            out = [run_safely(parallel.runner(False), spec) for spec in specs]
            for i, result in enumerate(out):
                finished(i, result)
            return out

    monkeypatch.setattr(parallel, "runner", runner)
    space = tmp_path / "space.hyper"
    space.write_text("interval choice [20,100,500]\nlearning_rate uniform 0.001,0.01\n")
    kwargs = dict(trainer="BIAO", algo="random", out_dir=str(tmp_path / "a"), cache_dir=str(tmp_path / "ca"))
    serial = tune("MiNet", str(space), max_evals=5, **kwargs)
    serial_calls, calls[:] = list(calls), []
    pool = Pool()
    kwargs.update(out_dir=str(tmp_path / "b"), cache_dir=str(tmp_path / "cb"))
    fanned = tune("MiNet", str(space), max_evals=5, pool=pool, **kwargs)
    assert pool.batches == [5] and calls == serial_calls  # all five at once, the same trials as the serial search
    # the same report (but for the folder it names), failed trials listed; the search itself trained nothing more
    assert fanned.replace("/b/", "/a/") == serial and "failed: interval=500" in serial
    with pytest.raises(ConfigError, match=r"TPE \(bayes\) draws each trial from the results before it"):
        tune("MiNet", str(space), max_evals=5, pool=pool, **{**kwargs, "algo": "bayes"})
