# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create $(VENV), install the project into it and run.
#
# torch: if $(PYTHON) already imports torch, that torch is reused (the venv sees the base
# interpreter's packages) and pinned; otherwise torch==$(TORCH_VERSION) is installed first (a
# CPU wheel where one is provided). Either way a constraints file pins the torch in place, so
# no dependency can pull a different build (and its GBs of CUDA packages).
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.aria-installed
FIGURES ?= figures

.PHONY: install test demo figures bench cov clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@if $(PYTHON) -c "import torch" 2>/dev/null; then \
	  echo "reusing the torch of $(PYTHON)"; \
	  $(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
	  $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install -q "torch==$(TORCH_VERSION)"; \
	fi
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__)" 2>/dev/null > $(VENV)/constraints.txt
	$(BIN)/python -m pip install -q -c $(VENV)/constraints.txt -e ".[test]"
	@touch $@

# Test files are spread over TEST_WORKERS processes (pytest-xdist), each file on one worker so
# its module fixtures (tiny SD / SDXL folders, caches) are built once; tests pin their own torch
# threads, so two workers keep a 2-core machine busy. TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# The main job on the embedded default, the 12-region glyph world without transfer (tau = 0): RC
# and ARIA distil the shipped glyph teacher for the same steps and seed, both are evaluated per
# region group, and runs/demo/report.html is written.
demo: install
	$(BIN)/aria world --config aria_train/assets/glyph_demo/teacher/world.json --out runs/glyph_demo --check 0
	$(BIN)/aria experiment experiments/demo_cpu.json --out runs/demo

figures: install
	$(BIN)/python -m paper_figures --out $(FIGURES)

bench: install
	$(BIN)/python -m bench

cov: install
	$(BIN)/python -m pytest --cov=aria_theory --cov-report=term-missing

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
