# Two set-up commands (see README): `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
COUNT ?= 1000
# WEIGHTS=random builds Chinese-CLIP with seeded random weights (offline machines; results meaningless).
ifdef WEIGHTS
export IMGSEARCH_WEIGHTS := $(WEIGHTS)
endif

.PHONY: install run test lint docs format sample bench soak faults faults-server fuzz lock clean

$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q pip==26.3
	$(BIN)/pip install -q -c requirements.lock -e ".[dev]"
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/imgsearch serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The documentation site from docs/ into site/; strict: a broken link or a missing page fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

sample: install
	$(BIN)/imgsearch sample --count $(COUNT)

bench: install
	$(BIN)/python bench/core.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/encoders.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/search_default.py
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/filters.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/sync.py
	$(BIN)/python bench/words.py
	$(BIN)/python bench/reembed.py
	$(BIN)/python bench/distributed.py
	$(BIN)/python bench/access.py
	$(BIN)/python bench/video.py
	$(BIN)/python bench/video_index.py

# 8 clients, mixed requests, 60 s, on loopback: zero errors and exact counts afterwards.
soak: install
	$(BIN)/python bench/soak.py

# kill -9 mid-load, then MariaDB stopped mid-search. Stops and starts the local MariaDB: run it alone.
faults: install
	$(BIN)/python bench/faults.py

# A local Milvus server killed mid-load and mid-search, then a service process killed mid-job with a second one
# taking over its job. Starts its own Milvus server and MySQL database; does not touch the running MariaDB.
faults-server: install
	$(BIN)/python bench/faults_server.py

# The OpenAPI fuzz test with more examples per operation than `make test` uses.
fuzz: install
	IMGSEARCH_FUZZ_EXAMPLES=200 $(BIN)/pytest tests/test_fuzz_api.py

lock: install
	{ sed -n '1,2p' requirements.lock; $(BIN)/pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
