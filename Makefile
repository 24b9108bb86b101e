# Two entry points (README "Quick start"): `make quickstart` and `make test`; `make docs` serves the docs site.
VENV ?= .venv
PY := $(VENV)/bin/python
FASHION := /usr/share/datasets/fashion-mnist

.PHONY: setup data quickstart test smoke docs clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# Fashion-MNIST IDX files: Debian's package when we can install it, else torchvision's download into ./data
data:
	@if [ -f $(FASHION)/train-images-idx3-ubyte.gz ] || [ -f data/FashionMNIST/raw/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq dataset-fashion-mnist >/dev/null || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; \
	else \
	  $(PY) -c "from torchvision.datasets import FashionMNIST as F; [F('data', train=t, download=True) for t in (True, False)]"; \
	fi

quickstart: setup data
	HARNESS_DATA=$${HARNESS_DATA:-$(CURDIR)/data} $(VENV)/bin/harness run studies/quickstart.yaml

test: setup data
	HARNESS_DATA=$${HARNESS_DATA:-$(CURDIR)/data} $(PY) -m pytest -q --durations=10 tests

# the docs site (mkdocs-material): the reference pages regenerated from the code, then served on 127.0.0.1:8000
docs: setup
	PYTHONPATH=$(CURDIR) $(PY) scripts/gen_reference.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

clean:
	rm -rf $(VENV) .pytest_cache site
