# The two commands of the README: `make serve` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: serve test venv dev lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Runtime dependencies only (what the service needs).
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# Everything the test suite needs (runtime + training + test tools).
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.runtime

venv: $(VENV)/.runtime
dev: $(VENV)/.dev

serve: $(VENV)/.runtime
	mkdir -p var
	$(BIN)/triage serve

test: $(VENV)/.dev
	bash scripts/ensure_postgres.sh
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check triage training serving triage_cli tests

clean:
	rm -rf $(VENV) var .pytest_cache

# Reproduce the committed default model (models/default) from the data present now:
# heads track/department/request_type on the corpus train splits (written + real; department also on the
# responsibility list, one row per department: `triage data duty`), head `label`
# (public 7-class topic) on 80% of teddy2020_messages_labeled (fixed seeded split; 20% kept for test).
# Materialised public-data splits go to data/datasets/ (gitignored: the public texts are not republished).
PUBLIC ?= ../shared/data/public
.PHONY: train-default eval-default
train-default: $(VENV)/.dev
	$(BIN)/triage prepare-corpus --out data/datasets/real
	$(BIN)/triage split --data $(PUBLIC)/teddy2020_messages_labeled.jsonl --out data/datasets/teddy --stratify label
	$(BIN)/triage data duty --out data/datasets/duty/departments.jsonl
	$(BIN)/triage train --name default --out models/default \
	  --data data/corpus/written/train.jsonl --data data/datasets/real/train.jsonl --data data/datasets/real/active.jsonl \
	  --data data/datasets/duty/departments.jsonl \
	  --data data/datasets/teddy/train.jsonl --data data/datasets/teddy/dev.jsonl \
	  --dev data/corpus/written/dev.jsonl --dev data/datasets/real/dev.jsonl \
	  -f track -f department -f request_type -f label

# Test-split figures of the default model (written and real corpus reported separately).
eval-default: $(VENV)/.dev
	mkdir -p var/eval
	$(BIN)/triage evaluate --model models/default --data data/corpus/written/test.jsonl --json > var/eval/corpus-written-test.json
	$(BIN)/triage evaluate --model models/default --data data/datasets/real/test.jsonl --json > var/eval/corpus-real-test.json
	$(BIN)/triage evaluate --model models/default --data data/datasets/teddy/test.jsonl --json > var/eval/teddy-test.json
