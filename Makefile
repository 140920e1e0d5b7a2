# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv with python3 -m venv and installs cryorl with the tested versions (constraints.txt).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cryorl-installed
PYTEST_ARGS ?=

.PHONY: demo test test-all lint bench reports clean constraints

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The main job: every agent (shipped DQN and PPO included), the oracle and simulated operators on the built-in grid.
demo: $(STAMP)
	$(VENV)/bin/cryorl benchmark --episodes 20 --out demo_output --overwrite

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Lint: ruff with the rules in pyproject.toml ([tool.ruff]); CI runs it before the tests.
lint: $(STAMP)
	$(PY) -m ruff check .

test-all: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/env_speed.py
	$(PY) benchmarks/vector_speed.py
	$(PY) benchmarks/decision_latency.py
	$(PY) benchmarks/training_speed.py
	$(PY) benchmarks/grid_statistics.py
	$(PY) benchmarks/load_speed.py

reports: $(STAMP)
	$(PY) benchmarks/human_traces.py

# Pins only what cryorl names itself (setup.cfg, extras included) at the tested versions, torch among them:
# pinning every transitive package would block companion tools (rl-zoo3 needs python-dateutil < 3, for one).
constraints: $(STAMP)
	$(PY) -c 'import importlib.metadata as m, re; \
	key = lambda n: re.sub(r"[-_.]+", "-", n).lower(); \
	named = {key(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in m.requires("cryorl")}; \
	pins = sorted({d.metadata["Name"]: d.version.split("+")[0] for d in m.distributions() if key(d.metadata["Name"]) in named}.items(), key=lambda p: key(p[0])); \
	print("# Versions cryorl is tested with (pip install -c constraints.txt ...). Regenerate with `make constraints`."); \
	print("\n".join(f"{n}=={v}" for n, v in pins))' > constraints.txt.tmp && mv constraints.txt.tmp constraints.txt

clean:
	rm -rf $(VENV) demo_output .pytest_cache
