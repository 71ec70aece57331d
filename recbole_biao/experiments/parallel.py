"""``--workers=N`` / ``--ray_address=ADDR``: the runs of ``--compare``, ``--sweep`` and ``--hyper_config`` fanned
out on Ray, each run in its own worker process with its share of the CPU threads.

Ray is an optional install (``pip install '.[ray]'`` or ``pip install -r requirements-ray.txt``); the default,
serial path never imports it. The driver alone writes the run cache, so a fanned-out command leaves the same
cache entries (same keys) as the serial one.
"""

import os
import socket
import time
from typing import Callable, List, Optional

from tqdm import tqdm

from recbole_biao.errors import ConfigError

__all__ = ["runner", "run_safely", "RayPool", "make_pool", "probe_address"]


def run_safely(runner: Callable, spec: dict) -> dict:
    """``runner(spec)``'s test and valid results, checkpoint, training flags and wall time, or ``{"error": one
    line}``: a failed run is reported in the table and the others go on."""
    started = time.time()
    try:
        out = runner(spec)
    except Exception as e:  # noqa: BLE001  (any failure of one run; the comparison goes on)
        text = str(e).splitlines()[0] if str(e) else ""
        return {"error": f"{type(e).__name__}: {text}"}
    return {"test_result": out["test_result"], "best_valid_result": out.get("best_valid_result"),
            "model_file": out.get("model_file"), "training": out.get("training"), "seconds": time.time() - started}


def _in_worker(spec: dict, cwd: str, threads: int, show_epochs: bool) -> dict:
    """One run in a Ray worker: in the driver's working directory (data, checkpoints and logs land where a
    serial run puts them), with ``threads`` intra-op threads."""
    import torch

    os.chdir(cwd)
    torch.set_num_threads(threads)
    return run_safely(runner(show_epochs), spec)


def runner(show_epochs: bool = False):
    """The function that trains one run of an experiment from its spec (model, dataset, config files, values,
    seed, trainer) and returns ``run_recbole_biao``'s dict; ``show_epochs``: per-epoch progress bars."""
    def run(spec: dict) -> dict:
        from recbole_biao.quick_start import run_recbole_biao

        values = {**spec["config"], "seed": spec["seed"], "show_progress": show_epochs}
        values.setdefault("state", "WARNING")
        files = list(spec["config_files"]) or None
        return run_recbole_biao(spec["model"], spec["dataset"], files, values, spec["trainer"])

    return run


PROBE_SECONDS = 10  # how long --ray_address's host may take to accept a connection


def probe_address(address: str) -> None:
    """Raise :class:`ConfigError` unless something accepts a TCP connection at ``address`` (``host:port``,
    optionally ``ray://``): ``ray.init`` itself retries an unreachable address for minutes, and one probe saw
    it ignore SIGTERM. ``auto`` (the local cluster Ray finds itself) is not probed."""
    if address == "auto":
        return
    where = address.split("://", 1)[-1]
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray_address: expected host:port (or auto), got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
    except OSError as e:
        reason = "timed out" if isinstance(e, socket.timeout) else (e.strerror or str(e))
        raise ConfigError(f"could not start or reach the Ray cluster at '{address}': {reason}") from None


class RayPool:
    """Runs specs on Ray: a local Ray with ``workers`` processes, or the cluster at ``address``."""

    def __init__(self, workers: Optional[int] = None, address: Optional[str] = None, show_epochs: bool = False):
        try:
            import ray
        except ImportError:
            raise ConfigError("--workers / --ray_address need Ray: pip install '.[ray]' "
                              "(or pip install -r requirements-ray.txt)") from None
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers: expected an int >= 1, got {workers}")
        self.ray, self.show_epochs = ray, show_epochs
        cpus = os.cpu_count() or 1
        self.threads = max(1, cpus // (workers or cpus))
        if not ray.is_initialized():
            env = {"env_vars": {"OMP_NUM_THREADS": str(self.threads), "PYTHONWARNINGS": "ignore"}}
            if address:
                probe_address(address)
            try:
                if address:
                    ray.init(address=address, runtime_env=env, log_to_driver=False)
                else:
                    ray.init(num_cpus=workers, runtime_env=env, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"the Ray cluster at '{address}'" if address else "a local Ray"
                raise ConfigError(f"could not start or reach {where}: {str(e).splitlines()[0]}") from None
        self.task = ray.remote(num_cpus=1)(_in_worker)

    def map(self, specs: List[dict], label: Callable[[dict], str] = str,
            finished: Optional[Callable[[int, dict], None]] = None) -> List[dict]:
        """:func:`run_safely`'s result for each spec, in order; one progress bar over all of them.
        ``finished(i, result)`` is called as each run ends (so that an interrupted fan-out keeps what ended)."""
        refs = [self.task.remote(spec, os.getcwd(), self.threads, self.show_epochs) for spec in specs]
        index = {ref: i for i, ref in enumerate(refs)}
        out, pending, started = [None] * len(refs), list(refs), time.time()
        with tqdm(total=len(refs), desc="runs", ncols=100) as bar:
            while pending:
                done, pending = self.ray.wait(pending, num_returns=1)
                for ref in done:
                    i = index[ref]
                    out[i] = self.ray.get(ref)
                    if finished is not None:
                        finished(i, out[i])
                    bar.set_postfix_str(f"{label(specs[i])}; elapsed {time.time() - started:.0f}s")
                    bar.update()
        return out


def make_pool(workers: Optional[int], address: Optional[str], show_epochs: bool = False) -> Optional[RayPool]:
    """A :class:`RayPool` when ``--workers`` or ``--ray_address`` is given, else None (the serial path)."""
    if workers is None and address is None:
        return None
    return RayPool(workers, address, show_epochs)
