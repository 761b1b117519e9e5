# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SCALE ?= small
SEED ?= 0
OUT ?= runs/demo

.PHONY: test demo bench venv clean

# setup.py builds the optional C kernels; editing it or a kernel re-runs the install.
$(BIN)/fluidrec: pyproject.toml setup.py src/fluidrec/codes/_rqkernel.c src/fluidrec/ranker/_fusedkernel.c src/fluidrec/_gemm6x16.h
	test -d $(VENV) || $(PY) -m venv $(VENV)
	# torch is pinned to the CPU wheel first so no dependency can pull a CUDA build.
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[dev,bench]"
	touch $(BIN)/fluidrec

venv: $(BIN)/fluidrec

test: venv
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

demo: venv
	HF_HUB_OFFLINE=1 $(BIN)/fluidrec reproduce --scale $(SCALE) --seed $(SEED) --out $(OUT) --resume

bench: venv
	@for f in benchmarks/*.py; do echo "== $$f"; HF_HUB_OFFLINE=1 $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache build src/fluidrec/codes/_rqkernel*.so src/fluidrec/ranker/_fusedkernel*.so
