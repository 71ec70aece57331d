"""Data-parallel training with ``torch.distributed``, started by ``torchrun``.

``torchrun --nproc_per_node=N run_recbole_biao.py ...`` starts N processes (ranks); each trains on its own
shard of every training batch (``train_batch_size`` is the total over the ranks, as in RecBole's own
distributed training) and ``DistributedDataParallel`` averages the model's gradients, so the ranks' models stay
identical. BIAO's upper level runs on every rank with its own dev and fresh batches; the perceptron's
hypergradients are averaged over the ranks before its step (the perceptron stays identical too, and its
gradient's noise shrinks). Evaluation, logging, checkpoints and the weight log happen on rank 0.

Everything here is a no-op in a single process, which stays the default path.
"""

import os
from typing import Dict, Iterable, List, Optional

import torch
import torch.distributed as dist

from recbole_biao.errors import ConfigError

__all__ = ["launched", "init", "rank", "world_size", "is_main", "rank_seed", "average_gradients",
           "average_tensors", "broadcast_values", "gather_tensors", "finish"]


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher) as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(use_gpu: bool) -> Optional[torch.device]:
    """Join the process group torchrun describes: backend ``nccl`` on GPUs, ``gloo`` on CPUs. Returns this rank's
    GPU (or None for the CPU); a one-line :class:`ConfigError` when the backend is unavailable."""
    if dist.is_initialized():
        return _device(use_gpu)
    if not dist.is_available():
        raise ConfigError("torchrun: this torch build has no torch.distributed")
    gpu = use_gpu and torch.cuda.is_available()
    backend = "nccl" if gpu else "gloo"
    available = dist.is_nccl_available() if gpu else dist.is_gloo_available()
    if not available:
        raise ConfigError(f"torchrun: backend '{backend}' is not available in this torch build")
    if gpu and torch.cuda.device_count() < int(os.environ.get("LOCAL_WORLD_SIZE", "1")):
        raise ConfigError(f"torchrun: {os.environ.get('LOCAL_WORLD_SIZE')} processes per node but "
                          f"{torch.cuda.device_count()} GPU(s); use --nproc_per_node={torch.cuda.device_count()}")
    device = _device(use_gpu)
    if device is not None:
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    return device


def _device(use_gpu):
    if use_gpu and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return None


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def backend() -> str:
    """The process group's backend (``gloo``, ``nccl``), or ``none`` outside torchrun."""
    return dist.get_backend() if dist.is_available() and dist.is_initialized() else "none"


def is_main() -> bool:
    return rank() == 0


def rank_seed(seed: int, offset: int = 0) -> int:
    """A seed of this rank's own random draws, derived from the run's ``seed`` (rank 0 keeps ``seed + offset``,
    so that a single process draws what it always drew)."""
    return seed + offset + 1_000_003 * rank()


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Replace each parameter's gradient by its mean over the ranks (a missing one counts as zeros)."""
    if world_size() == 1:
        return
    params = list(params)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    for p, mean in zip(params, average_tensors(grads, 1)[0]):  # (one item per rank: the mean over the ranks)
        p.grad = mean


def average_tensors(tensors: List[torch.Tensor], count: int) -> tuple:
    """``(sum over ranks of tensors / total count, total count)``: a mean over every rank's ``count`` items,
    each rank contributing the sum of its own ones in ``tensors``."""
    if world_size() == 1:
        return [t / max(count, 1) for t in tensors], count
    counted = torch.tensor([float(count)], device=tensors[0].device)
    flat = torch.cat([t.reshape(-1).float() for t in tensors] + [counted])
    dist.all_reduce(flat)
    total = int(round(float(flat[-1])))
    out, offset = [], 0
    for t in tensors:
        out.append((flat[offset:offset + t.numel()] / max(total, 1)).view_as(t).to(t.dtype))
        offset += t.numel()
    return out, total


def broadcast_values(values: List[float], device=None) -> List[float]:
    """Rank 0's ``values`` (floats) on every rank."""
    if world_size() == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


def gather_tensors(tensors: Dict[str, torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
    """Every rank's ``tensors`` (the same names and shapes on every rank), on every rank, on the CPU: the parts of
    a resume state that differ between the ranks (their random states, their own batch streams)."""
    if world_size() == 1:
        return [tensors]
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    gathered = [{} for _ in range(world_size())]
    for name, tensor in tensors.items():
        local = tensor.to(device) if device is not None else tensor
        parts = [torch.empty_like(local) for _ in range(world_size())]
        dist.all_gather(parts, local.contiguous())
        for i, part in enumerate(parts):
            gathered[i][name] = part.cpu()
    return gathered


def finish() -> None:
    """Leave the process group (all ranks wait for each other first)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
