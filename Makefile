# microagent — `make run`, `make test`, `make bench`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench venv stage deps clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

venv: $(STAMP)

stage: $(STAMP)
	$(BIN)/python -c "from host_tools import unixport; print(unixport.stage())"

# third-party MicroPython libraries (umqtt.simple) into build/unix/lib:
# fetched from PyPI, checked against host_tools/deps.json
deps: $(STAMP)
	$(BIN)/python -m host_tools.deps

run: $(STAMP) deps
	$(BIN)/microagent run --config boards/unix/microagent.json

test: $(STAMP) deps
	$(BIN)/pytest -q

bench: $(STAMP) deps
	$(BIN)/python -m bench

clean:
	rm -rf build $(VENV)
