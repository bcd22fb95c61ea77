# The two commands of the README: `make run` and `make test`. Each sets up everything it needs.
PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
CORE_SRC   := $(wildcard src/fastgw/_core.p* src/fastgw/_proxy.p* src/fastgw/_tls.p* src/fastgw/_core_src/* src/fastgw/_proxy_src/*)
CORE_SO    := src/fastgw/.core-built
APT_STAMP  := $(VENV)/.apt-updated

.PHONY: all venv compile debug run test test-unit test-e2e bench bench-curves bench-micro locust clean distclean sysdeps-build sysdeps-test sysdeps-bench

all: compile

$(VENV)/.deps: pyproject.toml | sysdeps-build
	$(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "Cython>=3.1,<4" "setuptools>=77" wheel
	$(PY) -m pip install -q -e '.[test,bench]' --no-build-isolation
	touch $@

venv: $(VENV)/.deps

# flock: several builds at once (parallel checkouts' tools, CI retries) would write the same .c
# and .so files; they take turns instead.
$(CORE_SO): $(VENV)/.deps $(CORE_SRC) setup.py | sysdeps-build
	flock src/fastgw/.build.lock $(PY) setup.py -q build_ext --inplace
	touch $@

compile: $(CORE_SO)

debug: $(VENV)/.deps
	FASTGW_DEBUG=1 $(PY) setup.py -q build_ext --inplace --force
	rm -f $(CORE_SO)

# System packages come from Debian, installed here so that a fresh machine needs nothing else.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

# libssl-dev: the headers `fastgw._tls` is compiled against (it links the system's libssl)
sysdeps-build:
	$(call apt_install,libssl-dev)

# chromium: the status page's browser test (driven by the playwright package; no browser download)
sysdeps-test:
	$(call apt_install,redis-server curl wrk chromium)

sysdeps-bench:
	$(call apt_install,nginx-light wrk util-linux procps)

# make run PORT=8081 ADMIN_PORT=9902 BACKEND_PORT=18091 when the default ports are taken
PORT         ?= 8080
ADMIN_PORT   ?= 9901
BACKEND_PORT ?= 18081
run: compile
	$(PY) -m fastgw demo --port $(PORT) --admin-port $(ADMIN_PORT) --backend-port $(BACKEND_PORT)

test: compile sysdeps-test
	$(PY) -m pytest -q -p no:cacheprovider tests

test-unit: compile
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

test-e2e: compile sysdeps-test
	$(PY) -m pytest -q -p no:cacheprovider tests/e2e

bench: compile sysdeps-bench
	$(PY) -m bench $(BENCH_ARGS)

# The five cost curves at full scale, one after the other (about 40 minutes; bench/README.md).
bench-curves: compile sysdeps-bench
	$(PY) -m bench connections
	$(PY) -m bench body
	$(PY) -m bench routes
	$(PY) -m bench ratelimit --e2e
	$(PY) -m bench websocket

bench-micro: compile
	$(PY) -m bench.micro

locust: compile sysdeps-bench
	$(PY) -m bench.locust_run $(LOCUST_ARGS)

clean:
	rm -rf build src/fastgw/*.so src/fastgw/_core.c src/fastgw/_proxy.c src/fastgw/_tls.c src/fastgw/*.html $(CORE_SO)

distclean: clean
	rm -rf $(VENV) src/*.egg-info
