# The two set-up commands of README.md: `make demo` and `make test`.
# Both create .venv when missing and install the project into it (torch pinned to 2.13.0, CPU).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.unlearn-fl-installed

.PHONY: demo test install browser postgres clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# A setting where the model remembers the withdrawing client: a quarter of client 0's rows are
# out-of-distribution canaries that only memorisation fits (README, "What a run shows").
DEMO_FLAGS ?= --canaries 0.25 --rounds 20 --local-epochs 10 --hidden 128

demo: $(STAMP)
	$(VENV)/bin/unlearn-fl simulate $(DEMO_FLAGS)

# The report's browser test needs Debian's chromium; install it when we can (root, apt-get).
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium is not installed and cannot be installed here: the browser test will be skipped"; }

# The ledger's PostgreSQL test needs Debian's postgresql server; install it when we can (root, apt-get).
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || \
	  echo "postgresql is not installed and cannot be installed here: the PostgreSQL ledger test will be skipped"; }

test: $(STAMP) browser postgres
	$(PY) -m pytest

clean:
	rm -rf $(VENV) unlearn-report mlflow.db mlruns unlearn-ledger.db
