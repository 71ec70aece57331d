# Two commands set everything up on a fresh machine: `make demo` and `make test` (both install first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
# the stamp names the Python's version: `make PYTHON=python3.12 ...` rebuilds a .venv made with another Python
STAMP := $(VENV)/.installed-$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)

.PHONY: install demo test clean
install: $(STAMP)

# Ray (requirements-ray.txt) is optional for users; it is installed here because the tests check the fan-out
$(STAMP): requirements.txt requirements-recbole.txt requirements-ray.txt setup.cfg
	rm -f $(VENV)/.installed*
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-ray.txt
	$(PY) -m pip install -q --no-deps -r requirements-recbole.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

demo: install
	$(PY) run_recbole_biao.py --model=MiNet --trainer=BIAO $(ARGS)

test: install
	$(PY) -m pytest -q tests $(ARGS)

clean:
	rm -rf saved log log_tensorboard .pytest_cache
