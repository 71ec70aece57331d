"""The perceptron's lower-step attention as native code: compiled on first use, loaded with ctypes.

``csrc/pooled_attention.cpp`` is compiled with the machine's C++ compiler (``$CXX``, else ``c++``/``g++``/
``clang++``) into a per-user cache (``$RECBOLE_BIAO_CACHE``, else ``$XDG_CACHE_HOME/recbole_biao``, else
``~/.cache/recbole_biao``), under a name that hashes the source, the compiler and flags and this CPU's features
(``-march=native`` code must not run on another CPU sharing the home folder). The library is written under a
temporary name and renamed, so a compile interrupted or run twice at once never leaves a file a later run loads.
Without a compiler, or with ``RECBOLE_BIAO_NATIVE=0``, :func:`pooled_attention` returns None and the perceptron
computes the same pass in torch (``perceptron.pool_jointly``); the reason is logged once.
"""

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Tuple

import torch

__all__ = ["enabled", "compiler", "library", "limits", "reset", "describe", "pooled_attention"]

SOURCE = Path(__file__).with_name("csrc") / "pooled_attention.cpp"
# tried in this order: a compiler without -march=native or OpenMP (Apple's clang) still gets a (serial) library
FLAG_SETS = (("-O3", "-march=native", "-std=c++17", "-fPIC", "-shared", "-fopenmp"),
             ("-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp"),
             ("-O3", "-std=c++17", "-fPIC", "-shared"))
_state = {}  # "library": the loaded CDLL, or None once loading failed (then "reason" says why)


def enabled() -> bool:
    """False when ``RECBOLE_BIAO_NATIVE`` is ``0`` / ``false`` / ``no`` / ``off``: the torch formulation only."""
    return os.environ.get("RECBOLE_BIAO_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def compiler() -> Optional[str]:
    for name in filter(None, (os.environ.get("CXX"), "c++", "g++", "clang++")):
        path = shutil.which(name)
        if path:
            return path
    return None


def _cpu_features() -> str:
    """What ``-march=native`` depends on: the CPU's model and flags."""
    try:
        with open("/proc/cpuinfo") as file:
            lines = [line for line in file if line.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() + platform.machine()


def _cache_dir() -> Path:
    configured = os.environ.get("RECBOLE_BIAO_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "recbole_biao"


def _build(compiler: str) -> Path:
    """The compiled library for this source, compiler and CPU: reused if present, else compiled and renamed."""
    source = SOURCE.read_bytes()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256(b"\0".join([source, repr(FLAG_SETS).encode(), version.encode(),
                                     _cpu_features().encode(), sys.platform.encode()])).hexdigest()[:16]
    folder = _cache_dir()
    target = folder / f"pooled_attention-{key}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        for flags in FLAG_SETS:
            done = subprocess.run([compiler, *flags, str(SOURCE), "-o", temporary], capture_output=True, text=True,
                                  timeout=300)
            if not done.returncode:
                os.replace(temporary, target)
                return target
        message = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"{compiler} failed on {SOURCE.name}: {message}")
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def library() -> Optional[ctypes.CDLL]:
    """The loaded library, or None (no compiler, compile failed, or disabled); built at most once a process."""
    if not enabled():
        return None
    if "library" not in _state:
        found = compiler()
        try:
            if found is None:
                raise RuntimeError("no C++ compiler found (set CXX)")
            lib = ctypes.CDLL(str(_build(found)))
            lib.pooled_attention.restype = None
            lib.pooled_attention.argtypes = [ctypes.c_void_p] * 7 + [ctypes.c_int64] * 5
            lib.pooled_attention_limits.restype = ctypes.c_int64
            lib.pooled_attention_limits.argtypes = [ctypes.c_int64]
            _state["library"] = lib
            _state["limits"] = (lib.pooled_attention_limits(0), lib.pooled_attention_limits(1))
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            _state["library"], _state["reason"] = None, str(error)
            logging.getLogger().warning(f"recbole-biao: the perceptron's native attention is unavailable "
                                        f"({error}); its torch formulation is used (same weights, slower)")
    return _state["library"]


def limits() -> Tuple[int, int]:
    """``(longest history, largest head size)`` the loaded library serves (needs :func:`library` first)."""
    return _state["limits"]


def reset() -> None:
    """Forget the loaded (or failed) library: the next :func:`library` finds, builds or loads it again."""
    _state.clear()


def describe() -> str:
    """Which formulation the lower-step attention uses, for the log."""
    if not enabled():
        return "torch (RECBOLE_BIAO_NATIVE=0)"
    lib = library()
    return f"native ({lib._name})" if lib is not None else f"torch ({_state['reason']})"


def pooled_attention(q_item: torch.Tensor, k_item: torch.Tensor, v_item: torch.Tensor, index: torch.Tensor,
                     mask: torch.Tensor, q_row: torch.Tensor, heads: int) -> Optional[torch.Tensor]:
    """``[rows, heads * d]``: per row and head ``sum_j abar_j v_item[index_j]`` with ``abar`` the mean over the
    row's valid queries ``i`` of ``softmax_j((q_item[index_i] + q_row) . k_item[index_j])`` over its valid keys;
    zeros for a row without valid positions. Tables are head-major (``[items * heads, d]``: row ``i * heads +
    head``), ``index`` / ``mask`` ``[rows, n]``, ``q_row`` ``[rows, heads, d]``. None where the native code
    does not apply (not loaded, not float32 on the CPU, under autograd, or beyond its limits): the caller then
    uses the torch formulation."""
    tensors = (q_item, k_item, v_item, q_row)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return None
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors) or index.device.type != "cpu":
        return None
    lib = library()
    if lib is None:
        return None
    rows, n = index.shape
    d_head = q_item.shape[-1]
    max_positions, max_head = _state["limits"]
    if n > max_positions or d_head > max_head:
        return None
    q_item, k_item, v_item, q_row = (t.detach().contiguous() for t in tensors)
    index = index.to(torch.int64).contiguous()
    mask = mask.to(torch.bool).contiguous()
    items = min(t.shape[0] for t in (q_item, k_item, v_item)) // heads
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= items):  # native code would read out of bounds
        raise IndexError(f"pooled_attention: history index outside the item table of {items} rows")
    if q_row.shape != (rows, heads, d_head) or (k_item.shape[-1], v_item.shape[-1]) != (d_head, d_head):
        raise ValueError("pooled_attention: q_row must be [rows, heads, d] and every table's rows of size d")
    out = torch.empty(rows, heads * d_head)
    if rows:
        lib.pooled_attention(q_item.data_ptr(), k_item.data_ptr(), v_item.data_ptr(), index.data_ptr(),
                             mask.data_ptr(), q_row.data_ptr(), out.data_ptr(), rows, n, heads, d_head,
                             torch.get_num_threads())
    return out
