"""Throughput and peak memory of the Amazon converter on generated files of 1 and 4 million reviews.

    python benchmarks/bench_amazon.py [--sizes 1000000 4000000] [--workdir /tmp/bench_amazon]

For each size it writes two categories in the 2018 layout (``<Cat>_5.json`` JSON lines with review text,
``meta_<Cat>.json``), three quarters of the reviews in the source, users drawn from a pool of size/10
(every user has reviews in both domains with some probability), then converts them in a fresh process
and prints lines per second and that process's peak resident memory. The ratio of the two peaks is
printed last.
"""

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def generate(folder, size, seed=0):
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    users = max(size // 10, 10)
    for category, share, n_items in (("Src", 0.75, max(size // 40, 10)), ("Tgt", 0.25, max(size // 100, 10))):
        with open(os.path.join(folder, f"{category}_5.json"), "w") as f:
            for _ in range(int(size * share)):
                f.write(json.dumps({"overall": float(rng.randint(1, 5)), "verified": True,
                                    "reviewTime": "01 1, 2015", "reviewerID": f"A{rng.randrange(users):09d}",
                                    "asin": f"{category[0]}{rng.randrange(n_items):09d}",
                                    "reviewerName": "someone", "reviewText": "a review text " * rng.randint(1, 8),
                                    "summary": "fine", "unixReviewTime": 1400000000 + rng.randrange(10**8)}) + "\n")
        with open(os.path.join(folder, f"meta_{category}.json"), "w") as f:
            for i in range(n_items):
                f.write(json.dumps({"asin": f"{category[0]}{i:09d}", "title": f"item {i}",
                                    "category": [category, f"{category} sub {i % 17}", "leaf"]}) + "\n")


def child(folder, out):
    sys.path.insert(0, ROOT)
    from dataset_converters import amazon

    start = time.perf_counter()
    report = amazon.convert("Src", "Tgt", folder, out, "bench", log=lambda *_: None)
    seconds = time.perf_counter() - start
    lines = sum(f["read"] for f in report["files"])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"lines": lines, "seconds": seconds, "peak_mb": peak_mb, "summary": report["summary"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--workdir", default="/tmp/bench_amazon")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    peaks = []
    print(f"{'reviews':>10}{'lines read':>12}{'seconds':>9}{'lines/s':>10}{'peak RSS MB':>13}{'users':>9}")
    for size in args.sizes:
        folder = os.path.join(args.workdir, str(size))
        generate(folder, size)
        out = subprocess.run([sys.executable, __file__, "--child", folder, folder + "-out"], capture_output=True,
                             text=True)
        if out.returncode:
            sys.exit(out.stderr[-2000:])
        r = json.loads(out.stdout.strip().splitlines()[-1])
        peaks.append(r["peak_mb"])
        print(f"{size:>10,}{r['lines']:>12,}{r['seconds']:>9.1f}{r['lines'] / r['seconds']:>10,.0f}"
              f"{r['peak_mb']:>13.0f}{r['summary']['users']:>9,}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(folder + "-out", ignore_errors=True)
    if len(peaks) > 1:
        print(f"peak memory ratio {args.sizes[-1]:,} / {args.sizes[0]:,} reviews: {peaks[-1] / peaks[0]:.2f}")


if __name__ == "__main__":
    main()
