# Two entry points: `make demo` (the main job on the embedded default data)
# and `make test` (the whole test suite). Each builds its own virtualenv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
export PERFWH_HOME ?= $(CURDIR)/var/warehouse
export DAGSTER_HOME ?= $(CURDIR)/var/dagster

.PHONY: demo test bench ui clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,aic,collector,deploy]'
	touch $@

SAMPLE_SQL := select system, framework, version, op, count(*) as points, \
	round(median(latency_ms), 4) as median_ms from perf_points group by all order by all

demo: $(BIN)/.installed
	$(BIN)/perfwh materialize
	$(BIN)/perfwh tables
	$(BIN)/perfwh sql "$(SAMPLE_SQL)"

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/materialize_bench.py
	$(BIN)/python benchmarks/estimator_speed.py
	$(BIN)/python benchmarks/estimate.py

# The Dagster UI on http://127.0.0.1:$(PORT) (sensor and schedule on); stops on Ctrl-C or SIGTERM.
PORT ?= 3000
ui: $(BIN)/.installed
	$(BIN)/python -m pipelines.ui --port $(PORT)

clean:
	rm -rf $(VENV) var
