"""Implicit hypergradients for bi-level optimisation (BIAO's upper level, paper Eq. (14), Algorithm 1).

With theta* (phi) = argmin_theta L_train(theta, phi), the implicit function theorem gives

    d L_dev / d phi = - grad_theta L_dev^T  H^{-1}  d/dphi grad_theta L_train,   H = grad^2_theta L_train.

The inverse-Hessian-vector product is approximated by an inverse solver chosen by name
(``hypergrad_method``); each solver has the signature ``(v, train_grads, params, iterations, alpha)``:

- ``neumann``: H^{-1} v ~ alpha * sum_{n=0}^{K} (I - alpha H)^n v (Lorraine et al., AISTATS 2020); with
  alpha = 1 this is exactly the loop of Algorithm 1;
- ``identity``: H^{-1} ~ I (Luketina et al., ICML 2016).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

Tensors = Sequence[torch.Tensor]  # one tensor per parameter, in the parameters' order

__all__ = ["neumann", "identity", "SOLVERS", "USES_HESSIAN", "implicit_hypergradient", "clip_and_check"]


def _hvp(train_grads: Sequence[torch.Tensor], params: Sequence[torch.Tensor], vector: Sequence[torch.Tensor]):
    """Hessian-vector product H v by differentiating ``train_grads . v`` (train_grads built with create_graph)."""
    hv = torch.autograd.grad(train_grads, params, grad_outputs=vector, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if h is None else h for h, p in zip(hv, params)]


def neumann(v: Tensors, train_grads: Tensors, params: Tensors, iterations: int = 3, alpha: float = 1.0) -> Tensors:
    """K-truncated Neumann series: ``p = alpha * sum_{n=0}^{K} (I - alpha H)^n v``."""
    term = [x.clone() for x in v]
    total = [x.clone() for x in v]
    for _ in range(iterations):
        # term <- (I - alpha H) term ;  total <- total + term
        hv = _hvp(train_grads, params, term)
        term = [t - alpha * h for t, h in zip(term, hv)]
        total = [s + t for s, t in zip(total, term)]
    return [alpha * s for s in total]


def identity(v: Tensors, train_grads: Tensors, params: Tensors, iterations: int = 0, alpha: float = 1.0
             ) -> Tensors:
    """H^{-1} replaced by ``alpha * I``."""
    return [alpha * x for x in v]


SOLVERS: dict[str, Callable] = {"neumann": neumann, "identity": identity}
# solvers that apply the Hessian; for the others only the terms of L_train that depend on phi matter
USES_HESSIAN = frozenset({"neumann"})


def implicit_hypergradient(dev_loss: torch.Tensor, train_loss: torch.Tensor, params: Tensors, hyper_params: Tensors,
                           method: str = "neumann", iterations: int = 3, alpha: float = 1.0) -> Tensors:
    """Gradient of ``dev_loss`` w.r.t. ``hyper_params`` through the lower-level optimum.

    Args:
        dev_loss (Tensor): upper-level loss, a function of ``params`` only.
        train_loss (Tensor): lower-level loss, a function of ``params`` and ``hyper_params``.
        params (list of Tensor): the lower-level parameters theta.
        hyper_params (list of Tensor): the upper-level parameters phi.
        method (str): a key of :data:`SOLVERS` (default: ``neumann``).
        iterations (int): K, the number of Neumann terms after the first (default: 3).
        alpha (float): Neumann scale (default: 1.0).

    Returns:
        list of Tensor: one gradient per hyper-parameter (zeros where it does not reach the losses).
    """
    if method not in SOLVERS:
        raise ValueError(f"hypergrad_method: expected one of {list(SOLVERS)}, got {method!r}")
    params, hyper_params = list(params), list(hyper_params)
    v = torch.autograd.grad(dev_loss, params, allow_unused=True)
    v = [torch.zeros_like(p) if g is None else g for g, p in zip(v, params)]
    train_grads = torch.autograd.grad(train_loss, params, create_graph=True, allow_unused=True)
    used = [(g, p, x) for g, p, x in zip(train_grads, params, v) if g is not None]
    train_grads, params, v = [u[0] for u in used], [u[1] for u in used], [u[2] for u in used]
    p = SOLVERS[method](v, train_grads, params, iterations, alpha)
    # - p^T d/dphi grad_theta L_train, as one vector-Jacobian product
    mixed = torch.autograd.grad(train_grads, hyper_params, grad_outputs=p, allow_unused=True)
    return [torch.zeros_like(h) if m is None else -m for m, h in zip(mixed, hyper_params)]


def clip_and_check(grads: Tensors, max_norm: Optional[float] = None) -> Tensors:
    """Clip the joint norm of ``grads`` to ``max_norm``; return ``(grads, norm)``, or ``(None, norm)`` if
    any entry is not finite (the caller then skips the step)."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if not torch.isfinite(norm):
        return None, float(norm)
    if max_norm is not None and norm > max_norm:
        grads = [g * (max_norm / (norm + 1e-12)) for g in grads]
    return grads, float(norm)
