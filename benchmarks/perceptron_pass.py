"""The perceptron's lower-step pass: today's, in torch and native, against the formulation it replaced.

    python benchmarks/perceptron_pass.py [--batch 512] [--history 50] [--embedding 16] [--repeats 20] [--model CoNet]
                                         [--compile]

Times the perceptron's scores of a batch as the lower step computes them (item embeddings, distinct history items,
both domains' pooled attention, the MLPs) on real training batches of the embedded ml-1m-genres data (``--model`` +
BIAO, default CoNet), and the pooled attention alone on synthetic batches whose histories are all full (nothing to
skip), each with the previous formulation (:func:`previous_pool`, :func:`previous_distinct`) swapped in, with
today's torch formulation (``RECBOLE_BIAO_NATIVE=0``: what runs without a C++ compiler) and with today's native
attention (``recbole_biao/biao/native.py``). Prints milliseconds per pass, the speed-ups over the previous
formulation and the largest relative difference of the outputs from it; then the real batches' native pass alone,
split into the native attention call and the torch operations around it.
"""

import argparse
import os
import sys
import time
import warnings

import torch
import torch.nn.functional as F


def previous_pooled_attention(self, table, index, item_emb, mask):
    """``PooledSelfAttention.forward`` before the cost work (commit e86cc2a): q, k and v with every term
    for every position (``[B, N, 3 * dim]``), attention over all N positions, masked mean of the outputs."""
    b, n = index.shape
    dim, h = self.attention.embed_dim, self.heads
    split = table.shape[-1]
    weight, bias = self.attention.in_proj_weight, self.attention.in_proj_bias
    per_item = table @ weight[:, :split].T
    per_row = item_emb @ weight[:, split:].T + bias
    qkv = per_item[index] + per_row[:, None, :]
    q, k, v = (t.reshape(b, n, h, dim // h).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    any_valid = mask.any(-1)
    keys = (mask | ~any_valid[:, None])[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keys).transpose(1, 2).reshape(b, n, dim)
    valid = mask.to(out.dtype)
    pooled = (out * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1.0)
    return self.attention.out_proj(pooled) * any_valid[:, None].to(out.dtype)


def previous_distinct(items, vocabulary):
    """How the distinct history items were found before (commit e86cc2a): a sort."""
    return torch.unique(items, return_inverse=True)


def previous_pool(modules, inputs):
    """The two domains' attentions one after the other, as before."""
    return [previous_pooled_attention(module, *x) for module, x in zip(modules, inputs)]


def time_formulations(function, inputs, repeats, compiled=False):
    """``{name: seconds per pass}`` of ``function(x)`` over ``inputs`` for the formulations ``previous`` (before
    the cost work), ``torch`` (today's, in torch: the path without a C++ compiler) and ``native`` (today's, the
    compiled attention; absent without a compiler), alternating so that all see the same machine load; and
    ``diff_torch`` / ``diff_native``: the largest relative difference of their outputs from ``previous``. With
    ``compiled``, also ``compiled``: ``torch.compile`` of the previous formulation (torch's fused attention,
    ``scaled_dot_product_attention``, over every position; shapes dynamic; compiled in the uncounted first
    round)."""
    from recbole_biao.biao import native, perceptron
    from recbole_biao.biao import upper as upper_module

    current = perceptron.pool_jointly, upper_module.distinct_items
    formulations = [("previous", (previous_pool, previous_distinct), "0"), ("torch", current, "0")]
    if compiled:
        formulations.append(("compiled", (torch.compile(previous_pool, dynamic=True), previous_distinct), "0"))
    if native.library() is not None:
        formulations.append(("native", current, "1"))
    seconds, outputs = {name: 0.0 for name, _, _ in formulations}, {}
    switch = os.environ.get("RECBOLE_BIAO_NATIVE")
    try:
        for round_ in range(repeats + 1):  # the first round warms up and is not counted
            for name, (pool, distinct), use_native in formulations:
                perceptron.pool_jointly, upper_module.distinct_items = pool, distinct
                os.environ["RECBOLE_BIAO_NATIVE"] = use_native
                start = time.perf_counter()
                with torch.no_grad():
                    outputs[name] = [function(x) for x in inputs]
                if round_:
                    seconds[name] += time.perf_counter() - start
    finally:
        perceptron.pool_jointly, upper_module.distinct_items = current
        if switch is None:
            os.environ.pop("RECBOLE_BIAO_NATIVE", None)
        else:
            os.environ["RECBOLE_BIAO_NATIVE"] = switch
    result = {name: total / (repeats * len(inputs)) for name, total in seconds.items()}
    for name in seconds:
        if name != "previous":
            result["diff_" + name] = max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))
                                         for a, b in zip(outputs[name], outputs["previous"]))
    return result


def real_batches(batch, history, embedding, count, data_path="dataset/", model="CoNet"):
    """``(upper level, [count] training batches)`` of ``model`` + BIAO on the embedded data."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from recbole_biao.quick_start import build_config, prepare_run
    from recbole_biao.utils import init_seed

    values = {"data_path": data_path, "state": "ERROR", "show_progress": False, "checkpoint_dir": "saved",
              "train_batch_size": batch, "perceptron_history_length": history, "embedding_size": embedding}
    model_class, config = build_config(model, None, None, values, "BIAO")
    init_seed(config["seed"], config["reproducibility"])
    _, (train, _, _), trainer = prepare_run(model_class, config)
    batches = []
    for interaction in train:
        batches.append(interaction.to(config["device"]))
        if len(batches) == count:
            break
    return trainer.upper, batches


def full_histories(batch, history, embedding, count, items=3000, seed=0):
    """Synthetic inputs of the pooled attention alone, every history full: ``(module, [count] tuples)``."""
    from recbole_biao.biao.perceptron import PooledSelfAttention

    g = torch.Generator().manual_seed(seed)
    item_dim = 2 * embedding
    module = PooledSelfAttention(2 * item_dim, 4)
    table = torch.randn(items, item_dim, generator=g)
    inputs = [(table, torch.randint(0, items, (batch, history), generator=g), torch.randn(batch, item_dim, generator=g),
               torch.ones(batch, history, dtype=torch.bool)) for _ in range(count)]
    return module, inputs


def native_share(upper, batches, repeats):
    """``(seconds per pass, of them in the native attention call)`` of the real batches' pass as the lower step
    runs it, in the fastest of ``repeats`` rounds; None without the native library."""
    from recbole_biao.biao import native

    if native.library() is None:
        return None
    call, spent = native.pooled_attention, [0.0]

    def timed(*args):
        start = time.perf_counter()
        try:
            return call(*args)
        finally:
            spent[0] += time.perf_counter() - start

    native.pooled_attention, rounds = timed, []
    try:
        for _ in range(repeats + 1):  # the first round warms up
            spent[0], start = 0.0, time.perf_counter()
            with torch.no_grad():
                for x in batches:
                    upper.perceptron.scores(*upper.inputs(x))
            rounds.append(((time.perf_counter() - start) / len(batches), spent[0] / len(batches)))
    finally:
        native.pooled_attention = call
    return min(rounds[1:])


def compare_passes(batch=512, history=50, embedding=16, repeats=20, count=10, data_path="dataset/", model="CoNet",
                   compiled=False):
    """Both measurements of the module docstring, and the native attention's share of the real batches' pass:
    ``{"real": ..., "full": ..., "share": ...}``."""
    upper, batches = real_batches(batch, history, embedding, count, data_path, model)
    module, inputs = full_histories(batch, history, embedding, count)
    return {"real": time_formulations(lambda x: upper.perceptron.scores(*upper.inputs(x)), batches, repeats, compiled),
            "full": time_formulations(lambda x: module(*x), inputs, repeats, compiled),
            "share": native_share(upper, batches, repeats)}


def print_passes(result, batch, history, embedding, model="CoNet"):
    print(f"perceptron lower-step pass, {model} + BIAO, batch {batch}, history {history}, embedding size {embedding}, "
          f"{torch.get_num_threads()} threads; ms per pass (speed-up over previous, largest relative difference):")
    for key, label in (("real", "perceptron scores, ml-1m-genres batches"), ("full", "pooled attention, full histories")):
        r = result[key]
        line = f"  {label:<42} previous {1000 * r['previous']:7.2f}"
        for name in ("torch", "compiled", "native"):
            if name in r:
                line += (f"   {name} {1000 * r[name]:6.2f} ({r['previous'] / r[name]:4.2f}x, "
                         f"{r['diff_' + name]:.1e})")
        print(line + ("" if "native" in r else "   native: unavailable (no C++ compiler?)"))
        torch_only = {n: r[n] for n in ("previous", "torch", "compiled") if n in r}
        if "native" in r:
            best = min(torch_only, key=torch_only.get)
            print(f"  {'':<42} native against the fastest torch-only formulation ({best}): "
                  f"{torch_only[best] / r['native']:.2f}x")
    if result.get("share"):
        total, attention = result["share"]
        print(f"  native pass on the real batches alone (fastest round): {1000 * total:.2f} ms, of which the native "
              f"attention call {1000 * attention:.2f} ms and the torch operations around it "
              f"{1000 * (total - attention):.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--embedding", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--model", default="CoNet", help="whose training batches (CoNet, MiNet, DASL)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile of the previous formulation")
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)  # recbole 1.0.1's pandas calls, while loading the data
    result = compare_passes(args.batch, args.history, args.embedding, args.repeats, data_path=args.data_path,
                            model=args.model, compiled=args.compile)
    print_passes(result, args.batch, args.history, args.embedding, args.model)


if __name__ == "__main__":
    main()
