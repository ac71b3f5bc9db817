# ST-VFM — `make repro` (set up, then run the DVC DAG on the embedded default) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RAY_USAGE_STATS_ENABLED ?= 0
export RAY_AUTH_MODE ?= disabled
export HF_HUB_OFFLINE ?= 1
export PYTHONUNBUFFERED ?= 1
PYTEST_ARGS ?=

.PHONY: setup repro test test-fast lint bench ui smoke real ablation-real seeds-real paper

setup: $(STAMP)

$(STAMP): pyproject.toml
	@echo "== setup 1/3: virtual environment $(VENV)"
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "== setup 2/3: upgrading pip"
	$(BIN)/python -m pip install --progress-bar on --upgrade pip
	@echo "== setup 3/3: installing the project and its pinned dependencies (torch, ray, mlflow, dvc: a few minutes the first time)"
	$(BIN)/python -m pip install --progress-bar on -e '.[dev]'
	touch $(STAMP)
	@echo "== setup done. To run the documented commands (dvc, stvfm, mlflow) in this shell: . $(VENV)/bin/activate"

repro: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro
	@echo "== done. Next: . $(VENV)/bin/activate, then dvc metrics show / stvfm compare / dvc plots show / make ui (README)"

# The paper's profile (params.yaml profiles.paper: DINOv2 ViT-S/14 weights file, all blocks, GPU workers) as a DVC
# experiment; extra settings through ARGS, e.g. make paper ARGS="-S model.weights=/path/dinov2_vits14_pretrain.pth"
paper: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc exp run -n paper -S profile=paper $(ARGS)

test: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The linters CI runs before the tests: ruff (lint rules + the formatter's check) and the architecture's contracts
# (import-linter; pyproject.toml [tool.ruff], [tool.importlinter], docs/ARCHITECTURE.md).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test-fast: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python $$b || exit 1; done

ui: setup
	$(BIN)/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db} --host 127.0.0.1 --port $${MLFLOW_PORT:-5000}

# Smoke: the ten paper datasets as small files in UniST's published layout (`stvfm fixtures`, into SMOKE_MIRROR), each
# through the real path: download (mirror) -> grid -> flow -> split -> train -> evaluate -> report, one short epoch
# each on CPU, so the MLflow UI shows ten experiments. Their checksums are pinned in SMOKE_MIRROR/sources.lock.json,
# never in data/sources.lock.json. The synthetic stand-ins `synthetic-<name>` still work (stvfm data all synthetic-crowd).
SMOKE_SETS ?= crowd cellular tdrive bikenyc1 bikenyc2 taxinyc1 taxinyc2 trafficzz traffictj trafficsh
SMOKE_MIRROR ?= data/fixtures
SMOKE_PROFILE ?= --set profile=smoke
smoke: setup
	$(BIN)/stvfm fixtures $(SMOKE_MIRROR) >/dev/null
	for n in $(SMOKE_SETS); do \
	  STVFM_SOURCES_LOCK=$(SMOKE_MIRROR)/sources.lock.json $(BIN)/stvfm data all $$n $(SMOKE_PROFILE) \
	    --set data.mirror_dir=$(SMOKE_MIRROR) && \
	  $(BIN)/stvfm train $$n $(SMOKE_PROFILE) && \
	  $(BIN)/stvfm evaluate $$n $(SMOKE_PROFILE) && \
	  $(BIN)/python -m pipelines.report $$n $(SMOKE_PROFILE) || exit 1; \
	done

# The real NYC samples (../shared/data/real, declared in local_sources) through the whole DAG as a DVC experiment.
# Profile `real` (params.yaml profiles.real): converged training, time identity, identity output path; the variant sweeps
# are left to `make ablation-real`.
REAL_SETS ?= bikenyc1_tail,bikenyc2_test,taxinyc2_test
comma := ,
real: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc exp run -n nyc-samples -S profile=real -S 'datasets=[$(REAL_SETS)]' \
	  -S 'sweeps.datasets=[]'

# The real-data ablation on bikenyc2_test (five variants + time identity / output path on/off, profile `real`):
# metrics/<ds>/ablation/*.json and reports/ablation-<ds>.md. Not part of `make repro`.
ABLATION_SET ?= bikenyc2_test
ablation-real: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/stvfm data all $(ABLATION_SET) --set profile=real
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pipelines.ablation $(ABLATION_SET) --set profile=real

# The seed study on the real samples: ST-VFM (profile `real`) and the STID baseline (its reference recipe), seeds 0-2
# each, val + test once per model: metrics/<ds>/seeds/*.json and reports/seeds-<ds>.md. Results already present are
# kept (delete one to re-run it). Not part of `make repro`.
seeds-real: setup
	for ds in $(subst $(comma), ,$(REAL_SETS)); do 	  PATH="$(abspath $(BIN)):$$PATH" $(BIN)/stvfm data all $$ds --set profile=real || exit 1; 	  PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pipelines.seeds $$ds --set profile=real || exit 1; 	done
