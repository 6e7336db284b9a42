# The two commands of the README, and a few helpers. Everything runs inside .venv.
VENV ?= .venv
VENV_GPU ?= .venv-gpu
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export VENV

.PHONY: setup setup-test setup-gpu lock-gpu fetch-model preflight train-machine rehearse pipeline arm test test-fast lock lint mlflow-ui prefect-ui deploy worker serve demo benchmark

## setup: install the locked environment into .venv (no-op when up to date)
setup:
	@bash scripts/setup.sh

## setup-gpu: the GPU environment in .venv-gpu from requirements-gpu.lock (Linux x86_64, NVIDIA driver >= 580)
setup-gpu:
	@VENV=$(VENV_GPU) bash scripts/setup.sh gpu

## fetch-model: download a GPU profile's model into the Hugging Face cache and check it against the hub (PROFILE=qwen2.5-7b), in .venv-gpu
fetch-model:
	@test -x $(VENV_GPU)/bin/python || { echo "no $(VENV_GPU): build the GPU environment first (make setup-gpu)" >&2; exit 1; }
	$(VENV_GPU)/bin/python -m flows.fetch_model --profile $(or $(PROFILE),qwen2.5-7b)

## train-machine: on machine MACHINE_RANK (1, 2, ...) of a profile over several machines (PROFILE=qwen2.5-7b-2x4), its share of the GRPO processes (machine 0 runs the pipeline), in .venv-gpu
MACHINE_RANK ?= 1
train-machine:
	@test -x $(VENV_GPU)/bin/python || { echo "no $(VENV_GPU): build the GPU environment first (make setup-gpu)" >&2; exit 1; }
	$(VENV_GPU)/bin/python -m flows.train --profile $(or $(PROFILE),qwen2.5-7b-2x4) --machine-rank $(MACHINE_RANK)

## preflight: check this machine for a GPU profile before a long run (PROFILE=qwen2.5-7b), in .venv-gpu
preflight:
	@test -x $(VENV_GPU)/bin/python || { echo "no $(VENV_GPU): build the GPU environment first (make setup-gpu)" >&2; exit 1; }
	$(VENV_GPU)/bin/python -m flows.train --preflight --profile $(or $(PROFILE),qwen2.5-7b)

## rehearse: a GPU profile's train step on this CPU, on a tiny stand-in model (default rehearsal.profile in params.yaml; PROFILE=qwen2.5-7b: 2 processes under ZeRO-3; qwen2.5-7b-2x4: 2 machines of 1 process; qwen2.5-7b-lora, qwen2.5-3b-lora: LoRA in one process)
rehearse: setup
	dvc repro split@relation
	python -m flows.rehearse $(if $(PROFILE),--profile $(PROFILE))

## pipeline: set up, then run the whole DVC pipeline (every run of params.yaml: the relation task on its CPU profile, the review-sentiment task)
pipeline: setup
	dvc repro

## run: set up, then one run of the pipeline and what it needs (RUN=sentiment: the review-sentiment task; default relation)
RUN ?= relation
.PHONY: run
run: setup
	dvc repro report@$(RUN)

## arm: another profile through train and evaluate, then the report with it (default cpu-prior: a start from keyword rules; ARM=cpu-rl: a random start)
arm: setup
	python -m flows.arm $(if $(ARM),--profile $(ARM))
	dvc repro

## setup-test: setup, then the Debian packages only the tests use (chromium, chromium-driver, iproute2), as root
setup-test: setup
	@bash scripts/setup-test.sh

## test: set up (the tests' packages too), then run the whole test suite on TEST_WORKERS processes (the long groups first)
TEST_WORKERS ?= 2
test: setup-test
	pytest -n $(TEST_WORKERS)

## test-fast: the unit tests only (no server, no command started)
test-fast: setup
	pytest -n $(TEST_WORKERS) -m unit

## lock: re-resolve requirements.lock from pyproject.toml (needs network)
lock: setup
	uv pip compile pyproject.toml --extra cpu --extra dev --python-version 3.11 \
	  --find-links $${TORCH_WHEELS:-/opt/wheels} --overrides lock-overrides.txt \
	  --generate-hashes -o requirements.lock

## lock-gpu: re-resolve requirements-gpu.lock (CUDA torch, vllm inside TRL's range; needs network)
lock-gpu: setup
	uv pip compile pyproject.toml --extra gpu --extra dev --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --generate-hashes -o requirements-gpu.lock

## lint: ruff's checks over the project (pyproject.toml [tool.ruff])
lint: setup
	ruff check .

## mlflow-ui: browse the runs at http://127.0.0.1:5000 (without MLflow's GenAI job workers: 6 processes)
mlflow-ui: setup
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

## prefect-ui: a local Prefect server with its UI at http://127.0.0.1:4200
prefect-ui: setup
	prefect server start --host 127.0.0.1 --port 4200

## deploy: the process work pool and the CPU pipeline deployment (needs PREFECT_API_URL)
deploy: setup
	prefect work-pool create people-relation-cpu --type process --overwrite
	prefect --no-prompt deploy --name cpu

## worker: a worker that runs the deployment's flow runs on this machine
worker: setup
	prefect worker start --pool people-relation-cpu

## serve: the trained GRPO model behind vLLM's OpenAI-compatible API until Ctrl-C
serve: setup
	python -m flows.serve --hold

## model-serve: the registry's champion (PROFILE_CPU=cpu-pretrained-prior, the pipeline's profile) behind mlflow models serve on 127.0.0.1:5001
PROFILE_CPU ?= cpu-pretrained-prior
.PHONY: model-serve
model-serve: setup
	MLFLOW_TRACKING_URI=sqlite:///mlflow.db MLFLOW_DISABLE_TELEMETRY=true HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
	  mlflow models serve -m models:/people-relation-$(PROFILE_CPU)@champion --env-manager local --host 127.0.0.1 --port 5001

## load-test: 2,000 requests at 1/16/64 in flight against the served CPU model on loopback (run it alone)
.PHONY: load-test
load-test: setup
	python scripts/load_test.py

## demo: a web page asking the trained model (params.yaml `demo`); SERVER_URL=http://HOST:PORT/v1 asks a running server
demo: setup
	python -m apps.demo $(if $(SERVER_URL),--url $(SERVER_URL))

## benchmark: evaluation through the vLLM server vs transformers generate (run it alone)
benchmark: setup
	python scripts/benchmark_serving.py
