# Two commands on a fresh machine: `make demo` (install + run the bundled demo) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the tests use to synthesise and transcode audio (the demo itself needs none).
APT_PACKAGES := espeak-ng flite sox ffmpeg
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-packages demo test bench mutation clean

$(BIN)/asrfair: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch 2.13.0 resolves to a CPU build on the team's machines; a bare `torch` would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q "torch==2.13.0" || echo "torch 2.13.0 not available here: the transformers backend tests will be skipped"
	# Ray (about 80 MB, 10 s from a warm cache) so the tests of the Ray executor run in CI too.
	$(BIN)/python -m pip install -q -e ".[test,hf,serve,faster-whisper,ray]"
	$(BIN)/python -c "import torch" 2>/dev/null && $(BIN)/python -m pip install -q -e ".[transformers]" || true
	touch $@

install: $(BIN)/asrfair

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES) >/dev/null; fi

demo: install
	$(BIN)/asrfair run manifests/demo/manifest.jsonl --backend pocketsphinx --by accent

test: install system-packages
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/scoring.py
	$(BIN)/python benchmarks/noise.py
	$(BIN)/python benchmarks/stats_slices.py
	$(BIN)/python benchmarks/slices_compare.py
	$(BIN)/python benchmarks/transformers_backend.py --utterances 8 --batch-size 4 --max-new-tokens 8
	$(BIN)/python benchmarks/scale.py

# Mutation testing of the statistics, scoring, report rules, runner, pipeline and store (hours on two cores; see benchmarks/README.md).
mutation: install
	$(BIN)/python -m pip install -q -e ".[test,hf,mutation]"
	$(BIN)/python benchmarks/mutation.py --max-children 2

clean:
	rm -rf $(VENV) .pytest_cache mutants
