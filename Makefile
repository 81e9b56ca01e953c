# One entry point. `make demo` and `make test` each set up .venv first (idempotent).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/stdl-edge
STAMP  := $(VENV)/.stdl-edge-installed
RUN    ?= runs/demo
EPOCHS ?= 6

.PHONY: setup demo test bench clean help

help:
	@echo "make demo   set up .venv, then train (STDL) on digits-dvs, export, run on loihi-sim, print results"
	@echo "make test   set up .venv, then run the test suite"
	@echo "make bench  run the benchmarks (tables + JSON in benchmarks/results/)"

setup: $(STAMP)

# Every install goes through constraints.txt (torch CPU wheel, numpy<2 for Lava).
# lava-nc/lava-dl declare Python<3.11 and pin an old torch; their real runtime needs are
# the [lava] extra, so the wheels themselves go in with --no-deps --ignore-requires-python.
# snntorch (the NIR peer the tests compare against) goes in --no-deps too: it needs only
# torch, numpy and the [nir] extra, and must not touch the pinned CPU torch.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[onnx,lava,datasets,fast,nir,tensorboard,dev]"
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0
	$(PY) -m pip install -q --disable-pip-version-check --no-deps snntorch==1.0.0
	touch $(STAMP)

# The demo starts from scratch each time: it replaces its own run folder, $(RUN).
demo: setup
	rm -rf $(RUN)
	$(CLI) data digits-dvs --out $(RUN)/data-preview.png
	$(CLI) train --dataset digits-dvs --model dvs-cnn --method stdl --subnets 4 --epochs $(EPOCHS) --out $(RUN)
	$(CLI) export $(RUN) --to onnx
	$(CLI) export $(RUN) --to netx
	$(CLI) export $(RUN) --to nir
	$(CLI) verify $(RUN) --devices torch,onnxruntime,loihi-sim --samples 359
	$(CLI) verify $(RUN) --devices loihi-sim,lava --samples 4 --batch 2
	$(CLI) run $(RUN)/export/netx/model.net --events digits-dvs:test --device loihi-sim --per-sample --out $(RUN)/predictions.jsonl --plot $(RUN)/plots

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/memory.py
	$(PY) benchmarks/accuracy.py
	$(PY) benchmarks/inference.py
	$(PY) benchmarks/loihi_sim.py
	$(PY) benchmarks/stream.py

clean:
	rm -rf $(VENV) runs .pytest_cache
