# cellbook: the two commands a new user needs.
#   make book   - set up, fetch the data the chapters need (official sources, or CELLBOOK_MIRROR),
#                 execute every notebook (papermill, PROFILE=quick) and build book/_build/html
#   make test   - set up, lint (ruff) and run the tests (the browser test too, once the book is built)
#   make verify - re-run every built chapter with nbval: its outputs must match the published ones
#   make smoke  - every notebook with the `full` profile's settings but its loops cut (profiles.yaml full.smoke),
#                 on the CPU in minutes, into SMOKE_OUT (default _build/smoke; the book in book/_build is untouched)
# Options: make book PROFILE=full DEVICE=cuda   |   make book NOTEBOOKS=part1   |   PYTHON=python3.11
#          make book JOBS=3   (parts at once; one part: its sweeps on 3 Dask workers)   |   make book SCHEDULER=tcp://host:8786
#          make book FALLBACK=synthetic   (the offline demo: labelled SYNTHETIC stand-ins, nothing fetched)

PYTHON   ?= python3
VENV     ?= .venv
PROFILE  ?= quick
DEVICE   ?= auto
NOTEBOOKS ?= all
FALLBACK ?=
JOBS     ?=
SCHEDULER ?=
SMOKE_OUT ?= _build/smoke
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.cellbook-installed

# Real data: CELLBOOK_DATA if set, else ../shared/data when it exists (a local data folder).
ifeq ($(origin CELLBOOK_DATA), undefined)
  ifneq ($(wildcard ../shared/data/README.md),)
    export CELLBOOK_DATA := $(abspath ../shared/data)
  endif
endif
export PYTHONHASHSEED := 0

.PHONY: book notebooks html test test-fast verify lint clean install bench smoke

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: an open requirement would pull several GB of CUDA packages
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[book,test]"
	touch $(STAMP)

install: $(STAMP)

notebooks: $(STAMP)
	$(VENV)/bin/cellbook run $(NOTEBOOKS) --profile $(PROFILE) --device $(DEVICE) $(if $(FALLBACK),-p fallback=$(FALLBACK)) \
		$(if $(JOBS),--jobs $(JOBS)) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

html: $(STAMP)
	$(PY) -m cellbook.book

book: notebooks html
	@echo "Book: $(abspath book/_build/html/index.html)"

lint: $(STAMP)
	$(VENV)/bin/ruff check cellbook tests benchmarks notebooks

test: lint
	$(PY) -m pytest -rfEs

test-fast: lint
	$(PY) -m pytest -rfEs -m "not notebook and not browser and not nbval"

verify: $(STAMP)
	CELLBOOK_NBVAL=all $(PY) -m pytest -rfEs -m nbval tests/test_nbval.py

# Fresh results each time (no chapter reads a stale one of an earlier run); never into the published book.
smoke: $(STAMP)
	@case "$(abspath $(SMOKE_OUT))/" in "$(abspath book/_build)/"*) \
	  echo "make smoke: SMOKE_OUT=$(SMOKE_OUT) is inside book/_build (the published book); give another folder" >&2; \
	  exit 1;; esac
	rm -rf $(addprefix $(SMOKE_OUT)/,executed results failed artifacts)
	$(VENV)/bin/cellbook run $(NOTEBOOKS) --profile full --smoke --device $(DEVICE) --out $(SMOKE_OUT) \
		$(if $(FALLBACK),-p fallback=$(FALLBACK)) $(if $(JOBS),--jobs $(JOBS))

bench: $(STAMP)
	$(PY) benchmarks/bench_part1.py

clean:
	rm -rf book/_build _build
