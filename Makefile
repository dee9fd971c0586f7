# The README's two commands: `make demo` (set up + main job on a real sample scene) and
# `make test` (set up + test suite). `.ci/run` calls `make test`.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Sample scene: the real WV2 scene beside the repository; override with SCENE=... SENSOR=...
SCENE  ?= ../shared/data/wv2/wv2_grip_top_fr.h5
SENSOR ?=
# Pretrained source network: our shipped WorldView-3 Fose (pretrained/weights) adapted to the
# scene; override with MODEL=NAME[:SENSOR] (zoo) or MODEL=arch WEIGHTS=file.pth.
MODEL   ?= fose
WEIGHTS ?=
ADAPTER ?= ft
OUTDIR ?= demo-out
SENSOR_ARG := $(if $(SENSOR),--sensor $(SENSOR),)
WEIGHTS_ARG := $(if $(WEIGHTS),--weights $(WEIGHTS),)

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
	@test -z "$(WEIGHTS)" -o -e "$(WEIGHTS)" || { echo "Error: weights $(WEIGHTS) not found; run make demo WEIGHTS=your_checkpoint.pth MODEL=arch"; exit 2; }
	$(BIN)/tta info $(SENSOR_ARG) "$(SCENE)"
	@echo "--- reduced resolution (Wald protocol): adapt, fuse, score against the real MS"
	$(BIN)/tta degrade $(SENSOR_ARG) "$(SCENE)" -o $(OUTDIR)/reduced.h5 --overwrite
	$(BIN)/tta adapt --model $(MODEL) $(WEIGHTS_ARG) --adapter $(ADAPTER) \
		--target $(OUTDIR)/reduced.h5 -o $(OUTDIR)/reduced_fused.h5 --overwrite \
		--report $(OUTDIR)/reduced_report.json
	@echo "--- full resolution: adapt to the scene and fuse all of it"
	$(BIN)/tta adapt --model $(MODEL) $(WEIGHTS_ARG) --adapter $(ADAPTER) $(SENSOR_ARG) \
		--target "$(SCENE)" -o $(OUTDIR)/fused.h5 --overwrite \
		--report $(OUTDIR)/report.json --save-adapter $(OUTDIR)/adapter.pt

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check tta adapters pretrained benchmarks tests

clean:
	rm -rf $(VENV) $(OUTDIR) build *.egg-info .pytest_cache
