# Two commands set everything up on a fresh machine: `make demo` and `make test` (both install first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: install demo test compare clean
install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-recbole.txt setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-recbole.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

demo: install
	$(PY) run_recbole_biao.py --model=MiNet --trainer=BIAO $(ARGS)

test: install
	$(PY) -m pytest -q tests $(ARGS)

clean:
	rm -rf saved log log_tensorboard .pytest_cache
