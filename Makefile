# microagent — `make run`, `make test`, `make bench`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench venv stage clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

venv: $(STAMP)

stage: $(STAMP)
	$(BIN)/python -c "from host_tools import unixport; print(unixport.stage())"

run: $(STAMP)
	$(BIN)/microagent run --config boards/unix/microagent.json

test: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf build $(VENV)
