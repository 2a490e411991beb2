# sscard: `make demo` and `make test` work on a fresh Debian machine (as root).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo lint typecheck pytest bench bench-exchange deps clean i18n

test: $(STAMP) lint typecheck pytest

deps:
	@./scripts/install-system-deps.sh

$(STAMP): pyproject.toml scripts/install-system-deps.sh
	@./scripts/install-system-deps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check sscard tests bench scripts
	$(BIN)/ruff format --check sscard tests bench scripts
	$(BIN)/lint-imports --no-cache   # the layers of docs/architecture.md ([tool.importlinter])

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/transmit.py
	$(BIN)/python bench/card.py
	$(BIN)/python bench/read.py
	$(BIN)/python bench/issuance.py
	$(BIN)/python bench/keys.py
	$(BIN)/python bench/psam.py
	$(BIN)/python bench/agent.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/centre.py

bench-exchange: $(STAMP)
	$(BIN)/python bench/exchange.py

# Message catalogs (docs/i18n.md): extract from the code, merge into each .po, compile.
i18n: $(STAMP)
	$(BIN)/python scripts/i18n.py all

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .demo
