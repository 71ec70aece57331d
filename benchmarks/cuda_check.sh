#!/usr/bin/env bash
# Short CUDA check of training, for a machine with a GPU (never part of the tests): CoNet and MiNet train one
# epoch with BIAO on the GPU and print their target test AUC, then bench_biao.py compares the base and BIAO
# trainers there (interval 5 and 100) and bench_scale.py runs its small size. recbole 1.0.1 and
# recbole-cdr 0.1.0 must be importable; on a machine without network, wheels in .whl/ are installed first.
set -euo pipefail
if ! python3 -c "import recbole, recbole_cdr, colorlog" 2>/dev/null && [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
for model in CoNet MiNet; do
  python3 run_recbole_biao.py --model=$model --trainer=BIAO --train_epochs='["BOTH:1"]' --show_progress=False --state=WARNING
done
python3 benchmarks/bench_biao.py --models CoNet MiNet --intervals 5 100 --epochs 2
python3 benchmarks/bench_scale.py --sizes small
