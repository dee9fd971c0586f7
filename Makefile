# The README's two commands: `make demo` (set up + main job on a real sample scene) and
# `make test` (set up + test suite). `.ci/run` calls `make test`.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Sample scene: the real WV2 scene beside the repository; override with SCENE=... SENSOR=...
SCENE  ?= ../shared/data/wv2/wv2_grip_top_fr.h5
SENSOR ?=
OUTDIR ?= demo-out
SENSOR_ARG := $(if $(SENSOR),--sensor $(SENSOR),)

.PHONY: setup demo test lint clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 needed"'
	$(PYTHON) -m venv $(VENV)

# Install the CPU build of torch first when none is present (a bare `torch` requirement
# would pull a multi-GB CUDA build), then the package with its dev extras.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	@test -e "$(SCENE)" || { echo "Error: sample scene $(SCENE) not found; run make demo SCENE=your_scene.h5 SENSOR=NAME"; exit 2; }
	@mkdir -p $(OUTDIR)
	$(BIN)/tta info $(SENSOR_ARG) "$(SCENE)"
	$(BIN)/tta degrade $(SENSOR_ARG) "$(SCENE)" -o $(OUTDIR)/reduced.h5 --overwrite
	$(BIN)/tta info $(OUTDIR)/reduced.h5

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check tta adapters pretrained benchmarks tests

clean:
	rm -rf $(VENV) $(OUTDIR) build *.egg-info .pytest_cache
