# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv if missing, installs verikit + first-party plugins, runs the ORL demo
#   make test   same set-up, then the whole test suite
# torch/torchvision are pinned through constraints.txt (they install from local disk here).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.verikit-installed
PLUGINS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))

.PHONY: demo test fuzz bench clean-demo help

help:
	@echo "make demo   - train, calibrate, enroll, verify and search on the bundled ORL faces"
	@echo "make test   - run the test suite"
	@echo "make fuzz   - the property-based fuzz tests with the long hypothesis profile (minutes)"
	@echo "make bench  - run the benchmarks in benchmarks/ (minutes; see benchmarks/README.md)"

$(STAMP): pyproject.toml constraints.txt $(addsuffix /pyproject.toml,$(PLUGINS))
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[detect,report,serve,test,onnx]" $(addprefix -e ,$(PLUGINS))
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/verikit demo --data data/orl_faces --workdir demo-output

# --dist loadfile: each test file stays on one worker (tests/test_docs_commands.py runs a document's
# blocks in order, each building on the last; module fixtures are built once).
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile --durations=25

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -m fuzz

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean-demo:
	rm -rf demo-output
