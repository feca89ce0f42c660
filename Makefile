# Two commands for a newcomer: `make book` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JOBS ?= 2
NB ?=

.PHONY: setup book test execute lab doctor clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

## Build the HTML book into _build/html from the committed notebook outputs.
book: setup
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "open _build/html/index.html"

## Every test: package unit and parity tests, exercises, notebook structure, the book build, and every
## notebook re-run under nbval. One pytest run, so its summary is the last thing printed.
# One torch thread per pytest worker: JOBS workers on JOBS cores. Oversubscribed OpenMP threads spin and made
# training steps up to 10x slower on 2-core machines.
# COLD=1 runs against an empty model cache (what a fresh machine sees).
test: setup
	$(if $(COLD),NANOSEEK_COLD_CACHE=1 NANOSEEK_CACHE=$$(mktemp -d),) NANOSEEK_SCALE=tiny OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) --dist loadfile --nbval-lax -p no:cacheprovider \
		tests notebooks

## Re-run notebooks in place at tiny scale (all, or NB=notebooks/01_nanogpt.py) and store their outputs.
execute: setup
	$(BIN)/python tools/colab.py || true
	$(BIN)/python tools/execute.py $(NB)

lab: setup
	$(BIN)/jupyter lab --allow-root notebooks

doctor: setup
	$(BIN)/python -m nanoseek doctor

clean:
	rm -rf _build .pytest_cache
