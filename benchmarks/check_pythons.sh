#!/usr/bin/env bash
# Installs recbole-biao into a fresh virtual environment for each Python from 3.10 to 3.13 found on this machine
# (python3.X on PATH, or pyenv's versions) and runs a one-epoch smoke run plus the fast tests there; one line per
# Python. Not part of CI: it downloads torch for each Python (PyPI's build; see the README, "Installation").
#   bash benchmarks/check_pythons.sh [3.10 3.12 ...]      (KEEP=1 keeps the environments under /tmp)
set -uo pipefail
cd "$(dirname "$0")/.."
versions=("$@")
[ $# -eq 0 ] && versions=(3.10 3.11 3.12 3.13)
fast_tests="tests/test_perceptron.py tests/test_hypergradient.py tests/test_protocol.py tests/test_dataloader.py tests/test_registry.py
            tests/test_recbole_models.py"
find_python() {  # a python$1 that runs (pyenv's shims exist for versions that are not selected), else pyenv's
  local root candidate
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for candidate in "$(command -v "python$1")" $(ls -d "$root"/versions/"$1".*/bin/python 2>/dev/null | sort -V -r); do
    [ -n "$candidate" ] && "$candidate" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$1'.split('.')))" \
      2>/dev/null && { echo "$candidate"; return; }
  done
}
for v in "${versions[@]}"; do
  py=$(find_python "$v")
  if [ -z "$py" ]; then echo "Python $v: not found"; continue; fi
  venv=$(mktemp -d "/tmp/recbole-biao-py$v-XXXX")
  log="$venv.log"
  start=$(date +%s)
  if ! { "$py" -m venv "$venv" && "$venv/bin/python" -m pip install -q -r requirements.txt -r requirements-ray.txt \
         && "$venv/bin/python" -m pip install -q --no-deps -r requirements-recbole.txt \
         && "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e .; } >"$log" 2>&1; then
    echo "Python $v ($($py -V 2>&1)): FAILED to install after $(( $(date +%s) - start )) s; see $log"; continue
  fi
  installed=$(( $(date +%s) - start ))
  torch=$("$venv/bin/python" -c "import torch, numpy, pandas; print(f'torch {torch.__version__}, numpy {numpy.__version__}, pandas {pandas.__version__}')" 2>>"$log")
  smoke=$("$venv/bin/python" run_recbole_biao.py --model=CoNet --trainer=BIAO --train_epochs='["BOTH:1"]' \
          --show_progress=False --state=WARNING --checkpoint_dir="$venv/saved" 2>>"$log" | tail -1)
  tests=$("$venv/bin/python" -m pytest -q $fast_tests -p no:cacheprovider 2>>"$log" | tail -1)
  echo "Python $v ($($py -V 2>&1); $torch): install ${installed} s, total $(( $(date +%s) - start )) s; smoke: ${smoke:-FAILED (see $log)}; fast tests: ${tests:-FAILED}"
  [ "${KEEP:-0}" = 1 ] || rm -rf "$venv"  # several GB each (torch and its NVIDIA libraries)
done
