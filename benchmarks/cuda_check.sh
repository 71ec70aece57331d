#!/usr/bin/env bash
# Short CUDA check of training, for a machine with a GPU (never part of the tests): every backbone trains
# two epochs with BIAO on the GPU and prints its target test AUC, then the benchmark compares the base and
# BIAO trainers there. recbole 1.0.1 and recbole-cdr 0.1.0 must be importable.
set -euo pipefail
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
for model in CoNet MiNet DASL; do
  python3 run_recbole_biao.py --model=$model --trainer=BIAO --train_epochs='["BOTH:2"]' --interval=20 \
    --show_progress=False --state=WARNING
done
python3 benchmarks/bench_biao.py --models CoNet MiNet DASL --intervals 20 100 --epochs 2
