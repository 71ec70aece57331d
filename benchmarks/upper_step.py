"""Where a BIAO upper step's time goes, and the forward-mode alternative to its second derivative.

    python benchmarks/upper_step.py [--models CoNet MiNet] [--pairs 6] [--repeats 3]

On the embedded ML-1M genre split with the default properties: draws ``--pairs`` matched (dev, fresh) batch
pairs and times, per pair and in ms, (1) the upper step's hypergradient as the product computes it
(``implicit_hypergradient``, identity solver: dev gradient, gradient with ``create_graph``, mixed second
derivative) and (2) the same hypergradient from one forward-mode pass: with the perceptron reading detached
embeddings, ``d^2 L_train / dphi dtheta . v = sum_i dw_i/dphi (grad l_i . v)``, and the directional derivatives
``grad l_i . v`` of the per-behaviour losses come from ``torch.autograd.forward_ad``. Then (2)'s parts: dev
loss forward and backward, the forward-mode pass, the perceptron's forward and backward. Prints the largest
relative difference of the two hypergradients. (2) is not used by the trainer: it measured no faster
(README, "Cost"). DASL is left out: its packed GRU has no forward-mode derivative in torch.
"""

import argparse
import collections
import os
import sys
import tempfile
import time
import warnings

import torch
import torch.nn as nn
from torch.autograd import forward_ad

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _SourceLosses(nn.Module):
    """The per-behaviour source losses as a module's forward, for ``torch.func.functional_call``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, interaction):
        return self.model.domain_losses(interaction, "source")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["CoNet", "MiNet"])
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)
    from dataset_converters import ml1m_genres
    from recbole_biao.data import BiaoDataset, build_cdr_data, data_preparation
    from recbole_biao.biao.hypergradient import implicit_hypergradient
    from recbole_biao.trainer import BIAOTrainer
    from tests.helpers import build_model, config_for

    folder = tempfile.mkdtemp(prefix="upper_step-")
    ml1m_genres.convert(folder)
    _, config0 = config_for(folder)
    dataset = BiaoDataset(config0)
    loaded = (config0, dataset, build_cdr_data(dataset))
    for name in args.models:
        config, model, data = build_model(loaded, name, folder, trainer="BIAO")
        trainer = BIAOTrainer(config, model)
        upper = trainer.upper
        upper.bind(data_preparation(config, data)[0])
        params, hyper = model.non_head_parameters(), upper.learned
        names = {id(p): n for n, p in model.named_parameters()}
        wrapper = _SourceLosses(model)
        pairs = [upper.batch_pair() for _ in range(args.pairs)]
        parts = collections.defaultdict(float)

        def product(dev, fresh):
            train_loss, scores, _ = upper.train_loss(fresh)
            return implicit_hypergradient(upper.dev_loss(dev), train_loss, params, hyper + [scores], "identity")

        def forward_mode(dev, fresh):
            marks = [time.perf_counter()]
            dev_loss = upper.dev_loss(dev)
            marks.append(time.perf_counter())
            v = torch.autograd.grad(dev_loss, params, allow_unused=True)
            marks.append(time.perf_counter())
            with forward_ad.dual_level():
                duals = {"model." + names[id(p)]: forward_ad.make_dual(p.detach(), t)
                         for p, t in zip(params, v) if t is not None}
                losses = torch.func.functional_call(wrapper, duals, (fresh,), strict=False)
                directional = forward_ad.unpack_dual(losses).tangent
            marks.append(time.perf_counter())
            scores = upper.perceptron.scores(*upper.inputs(fresh))
            grads = torch.autograd.grad(upper.perceptron.normalise(scores), hyper + [scores],
                                        grad_outputs=-directional, allow_unused=True)
            marks.append(time.perf_counter())
            for part, start, end in zip(("dev forward", "dev backward", "forward-mode pass", "perceptron"),
                                        marks, marks[1:]):
                parts[part] += (end - start) * 1000
            return [torch.zeros_like(h) if g is None else g for g, h in zip(grads, hyper + [scores])]

        timings = collections.defaultdict(list)
        for _ in range(args.repeats):
            for method in (product, forward_mode):
                start = time.perf_counter()
                results = [method(*pair) for pair in pairs]
                timings[method.__name__].append((time.perf_counter() - start) * 1000 / len(pairs))
                if method is product:
                    reference = results
        difference = max(float((a - b).norm() / a.norm().clamp_min(1e-30))
                         for r, f in zip(reference, results) for a, b in zip(r, f))
        norm = min(float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in r[:-1]]))) for r in reference)
        rows = (len(pairs[0][0]), len(pairs[0][1]))
        print(f"{name}: dev rows {rows[0]}, fresh rows {rows[1]}; ms per upper step: product "
              + " / ".join(f"{t:.1f}" for t in timings["product"]) + ", forward mode "
              + " / ".join(f"{t:.1f}" for t in timings["forward_mode"])
              + f"; largest relative difference {difference:.1e} (smallest perceptron hypergradient norm {norm:.1e})")
        calls = args.repeats * len(pairs)
        print("  forward mode's parts (ms): " + ", ".join(f"{k} {v / calls:.1f}" for k, v in parts.items()))


if __name__ == "__main__":
    main()
