"""The implicit hypergradient against the exact one on ridge regression with per-sample weights."""

import pytest
import torch

from recbole_biao.biao.hypergradient import clip_and_check, implicit_hypergradient


def ridge_problem(seed=0, n=40, dim=5, lam=0.3):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, dim, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
    x_dev, y_dev = torch.randn(30, dim, generator=g, dtype=torch.float64), torch.randn(30, generator=g, dtype=torch.float64)
    phi = (0.5 * torch.randn(n, generator=g, dtype=torch.float64)).requires_grad_()

    def train_loss(theta, phi):
        return (torch.sigmoid(phi) * (x @ theta - y) ** 2).mean() + lam * theta @ theta

    def dev_loss(theta):
        return ((x_dev @ theta - y_dev) ** 2).mean()

    def solve(phi):  # closed form: (2/n X^T W X + 2 lam I) theta = 2/n X^T W y
        w = torch.sigmoid(phi)
        a = 2 / n * x.T @ (w[:, None] * x) + 2 * lam * torch.eye(dim, dtype=torch.float64)
        return torch.linalg.solve(a, 2 / n * x.T @ (w * y)), a

    return phi, train_loss, dev_loss, solve


def exact_and_neumann(iterations, method="neumann"):
    phi, train_loss, dev_loss, solve = ridge_problem()
    theta_star, hessian = solve(phi)
    exact, = torch.autograd.grad(dev_loss(theta_star), phi)  # differentiating through the closed form
    theta = theta_star.detach().requires_grad_()
    alpha = 1.0 / torch.linalg.eigvalsh(hessian.detach()).max().item()
    approx, = implicit_hypergradient(dev_loss(theta), train_loss(theta, phi), [theta], [phi],
                                     method=method, iterations=iterations, alpha=alpha)
    return exact, approx


def test_neumann_converges_to_the_exact_implicit_gradient():
    errors = []
    for k in (0, 1, 3, 10, 30, 300):
        exact, approx = exact_and_neumann(k)
        errors.append((torch.linalg.norm(approx - exact) / torch.linalg.norm(exact)).item())
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-6, errors
    assert errors[0] > 1e-2  # K = 0 alone is a poor approximation here, so the test can tell them apart


def test_identity_equals_neumann_with_no_terms():
    assert torch.allclose(exact_and_neumann(0, "identity")[1], exact_and_neumann(0, "neumann")[1])


def test_unknown_method():
    with pytest.raises(ValueError, match="hypergrad_method: expected one of"):
        exact_and_neumann(1, "cg")


def test_clip_and_non_finite_guard():
    grads, norm = clip_and_check([torch.tensor([3.0, 4.0]), torch.tensor([12.0])], max_norm=6.5)
    assert norm == pytest.approx(13.0)
    assert torch.allclose(grads[0], torch.tensor([1.5, 2.0])) and torch.allclose(grads[1], torch.tensor([6.0]))
    assert clip_and_check([torch.tensor([1.0, float("nan")])], 10.0)[0] is None
    assert clip_and_check([torch.tensor([float("inf")])], None)[0] is None
