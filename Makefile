# One command to set up and run the demo, one to set up and run the tests.
# The CPU build of torch is pinned and installed first, so nothing else resolves a different torch.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
TORCH := torch==2.13.0
SHARED_DATA := $(wildcard ../shared/data)

.PHONY: setup demo test docs bench-deps clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: setup
	$(VENV)/bin/deepzen demo

test: setup
	DEEPZEN_DATA=$${DEEPZEN_DATA:-$(SHARED_DATA)} $(PY) -m pytest -q

# The documentation site (mkdocs-material + mkdocstrings, in the test extra) into site/; warnings fail it.
docs: setup
	$(VENV)/bin/mkdocs build --strict

# Peers for side-by-side benchmarks (Keras 3, Lightning, scikit-surprise, stable-baselines3); never runtime deps.
bench-deps: setup
	$(PY) -m pip install -q '.[bench]' $(TORCH)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
