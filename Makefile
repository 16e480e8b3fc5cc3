# Postroom — the two commands of the quick start, and a few helpers.
PYTHON ?= python3
VENV ?= .venv

.PHONY: run test install install-dev lock lint tools sbom

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

install: $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet --require-hashes -r requirements/base.txt
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .

install-dev: install
	$(VENV)/bin/pip install --quiet --require-hashes -r requirements/base.txt -r requirements/dev.txt

## make run: install Postroom and run it embedded (SQLite, files in ./data) on http://127.0.0.1:8000
run: install
	$(VENV)/bin/postroom run

## make test: install everything the tests need and run ruff, mypy and the whole suite
test:
	./scripts/test

lint: install-dev
	$(VENV)/bin/ruff check postroom bench
	$(VENV)/bin/mypy postroom

# Maintainer tools (uv, cyclonedx-bom) live in their own hash-pinned environment.
TOOLS_VENV ?= .venv-tools
$(TOOLS_VENV)/bin/python:
	$(PYTHON) -m venv $(TOOLS_VENV)

tools: $(TOOLS_VENV)/bin/python
	$(TOOLS_VENV)/bin/pip install --quiet --require-hashes -r requirements/tools.txt

## make sbom: a CycloneDX SBOM of the pinned runtime dependencies, for each release
SBOM ?= build/postroom-sbom.cdx.json
sbom: tools
	mkdir -p $(dir $(SBOM))
	$(TOOLS_VENV)/bin/cyclonedx-py requirements --pyproject pyproject.toml --output-reproducible --of JSON -o $(SBOM) requirements/base.txt
	@echo "SBOM written to $(SBOM)"

## make lock: regenerate the hash-pinned requirement files from requirements/*.in
lock: tools
	$(TOOLS_VENV)/bin/uv pip compile --python-version 3.11 --generate-hashes --quiet requirements/base.in -o requirements/base.txt
	$(TOOLS_VENV)/bin/uv pip compile --python-version 3.11 --generate-hashes --quiet requirements/dev.in -o requirements/dev.txt
	$(TOOLS_VENV)/bin/uv pip compile --python-version 3.11 --generate-hashes --quiet requirements/tools.in -o requirements/tools.txt
