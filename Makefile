# Two commands do all the set-up: `make run` and `make test`.
# The workflow engine needs Python 3.12 or later: the first interpreter found that is new enough
# (on PATH, else one that pyenv holds).
ifndef PYTHON
PYTHON := $(shell for p in python3.13 python3.12 python3 $$(pyenv root 2>/dev/null)/versions/3.1[2-9]*/bin/python3 \
	$$HOME/.pyenv/versions/3.1[2-9]*/bin/python3; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)
endif
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install bench clean protos

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.12 or later is needed: none found on PATH or in pyenv" >&2; exit 1; }
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/dm run

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/run_all.py

# Regenerate shared/messages/*_pb2.py from protos/ (`protos/generate.py --check` only compares).
protos: $(STAMP)
	$(PY) protos/generate.py

clean:
	rm -rf $(VENV) var .pytest_cache

# The container image of every role (Dockerfile); IMAGE names it.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= data-manager:$(VERSION)

.PHONY: image
image:
	@command -v docker >/dev/null 2>&1 || { echo "make image: docker is not installed: cannot build $(IMAGE)" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker daemon answers (docker info failed): cannot build $(IMAGE)" >&2; exit 1; }
	docker build --tag $(IMAGE) .
