# locus.infra — one entry point. `make demo` and `make test` each do all set-up on a
# fresh Debian 12 machine (as root) and then run. `make setup` does the set-up alone.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
COLLECTION_ROOT := $(VENV)/collections
# Machine-wide cache for heavy artefacts (images, chroots, wheels), keyed by version below it.
export LOCUS_CACHE_DIR ?= /var/cache/locus
export UV_CACHE_DIR ?= $(LOCUS_CACHE_DIR)/uv
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

# Debian packages every part needs; each line names who needs them.
APT_PACKAGES := python3 python3-venv python3-dev git rsync sqlite3 ca-certificates curl \
	build-essential cmake \
	postgresql-15 postgresql-client-15 \
	redis-server \
	debootstrap systemd-container iptables iproute2 openssh-client apt-cacher-ng \
	bird2 \
	shellcheck \
	chromium

.PHONY: help setup apt venv llama-wheel lock changelog demo test lint unit integration sanity molecule ship clean distclean

help:
	@echo "make demo   - set up everything, then run the demo on the embedded defaults"
	@echo "make test   - set up everything, then run the whole test suite"
	@echo "make setup  - set-up only (apt packages, .venv, Python packages)"
	@echo "make lock   - re-pin requirements.lock after changing pyproject.toml"
	@echo "the parts of make test (after make setup): lint, unit (tests/unit), integration (tests/integration:"
	@echo "  PostgreSQL, NetBox, the embedded model, doubles, ansible-playbook), sanity, molecule (the lab), ship"

setup: apt venv

# Installs only what is missing, so a prepared machine skips apt entirely.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "apt: installing $$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.locus-stamp

# Embedded LLM runtime (the agents' offline default). llama-cpp-python is published as an
# sdist only (5-10 min of C++ on 2 cores) and this network strips HTTP cache headers, so uv's
# own cache rebuilds it every time: requirements.lock leaves it out and its wheel is built once
# per machine from the hash-pinned sdist into $(LOCUS_CACHE_DIR)/wheels, keyed by version,
# architecture and flags. AMX is left out: llama.cpp's AMX kernels crash on this machine kind
# (segfault in the first batch on Q4_1 weights; ggml-org/llama.cpp#20824). The version must match
# the `embedded` extra in pyproject.toml (tests/unit/test_agent_rules.py checks).
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CPP_SHA256 := 832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
LLAMA_CPP_ARCH := $(shell uname -m)
LLAMA_CPP_CFLAGS := $(if $(filter x86_64,$(LLAMA_CPP_ARCH)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16,)
LLAMA_CPP_WHEELS := $(LOCUS_CACHE_DIR)/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(LLAMA_CPP_ARCH)-noamx

llama-wheel:
	@if ! ls $(LLAMA_CPP_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
	    echo "building llama-cpp-python $(LLAMA_CPP_VERSION) once for this machine (5-10 min)"; \
	    tmp=$$(mktemp -d $(LOCUS_CACHE_DIR)/wheels/.llama-build.XXXXXX); \
	    echo "llama-cpp-python==$(LLAMA_CPP_VERSION) --hash=sha256:$(LLAMA_CPP_SHA256)" > $$tmp/requirements.txt; \
	    CMAKE_ARGS="-DCMAKE_C_FLAGS='$(LLAMA_CPP_CFLAGS)' -DCMAKE_CXX_FLAGS='$(LLAMA_CPP_CFLAGS)'" \
	    CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip wheel -q --no-deps --require-hashes \
	        -r $$tmp/requirements.txt -w $$tmp/out; \
	    mkdir -p $(LLAMA_CPP_WHEELS) && mv $$tmp/out/*.whl $(LLAMA_CPP_WHEELS)/ && rm -rf $$tmp; \
	fi
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps --no-index --find-links $(LLAMA_CPP_WHEELS) \
	    llama-cpp-python==$(LLAMA_CPP_VERSION)

$(VENV)/.locus-stamp: requirements.lock pyproject.toml
	@mkdir -p $(LOCUS_CACHE_DIR)
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@[ -x $(BIN)/uv ] || $(BIN)/python -m pip install -q uv==0.13.8
	$(BIN)/uv pip sync -q --native-tls --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --native-tls --python $(BIN)/python --no-deps .
	@mkdir -p $(LOCUS_CACHE_DIR)/wheels && $(MAKE) --no-print-directory llama-wheel
	@# This checkout *is* ansible_collections.locus.infra: link it where Ansible and
	@# Python (via a .pth file) look for collections.
	@mkdir -p $(COLLECTION_ROOT)/ansible_collections/locus
	@ln -sfn $(CURDIR) $(COLLECTION_ROOT)/ansible_collections/locus/infra
	@echo $(COLLECTION_ROOT) > $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/locus_collections.pth
	@touch $@

# The demo on the embedded defaults: the local lab (lab up -> site -> verify -> the controller
# demo), then the agents' review of that run on the embedded model; SQLite store.
# DEMO_OLLAMA=ollama1: the review runs through the lab's Ollama host instead (docs/ollama.md).
DEMO_OLLAMA ?=
demo: setup
	$(BIN)/ansible-playbook -i inventory/localhost.yml -i inventory/lab playbooks/demo_lab.yml
	$(BIN)/ansible-playbook $(if $(DEMO_OLLAMA),-i inventory/localhost.yml -i inventory/lab -e demo_ollama=$(DEMO_OLLAMA)) \
	    playbooks/demo_agents.yml

# Re-pin the whole dependency tree after changing pyproject.toml. llama-cpp-python is left out
# of the lock: its wheel is built once per machine (see llama-wheel).
lock:
	$(BIN)/uv pip compile -q --native-tls --python-version 3.11 --extra test --extra embedded --extra mcp \
	    --no-emit-package llama-cpp-python pyproject.toml -o requirements.lock --generate-hashes

# CHANGELOG.rst from changelogs/fragments for galaxy.yml's version (fragments are kept; rerun it
# whenever fragments arrive before the release).
changelog:
	$(BIN)/antsibull-changelog release --reload-plugins

test: setup
	$(MAKE) --no-print-directory lint unit integration sanity molecule ship

lint:
	$(BIN)/ruff check plugins tests bench
	$(BIN)/ansible-lint --profile production --offline -q

# Fast, no services: the models, parsers, policies and doubles in tests/unit.
unit:
	$(BIN)/pytest -q tests/unit

# Real components (PostgreSQL, NetBox, the embedded model, the API doubles, ansible-playbook runs).
integration:
	$(BIN)/pytest -q tests/integration

sanity:
	tests/sanity.sh

# Last: build the tarball of the tree the suite has just run in, install it elsewhere and use it
# as collection users and execution environments do (tests/ship/).
ship:
	$(BIN)/pytest -q tests/ship

# Molecule scenarios (molecule/*/) on one shared lab (molecule/default creates and destroys
# it); the lab is torn down at the end even when a scenario fails.
molecule:
	@status=0; export LOCUS_STATE_DIR=$$(mktemp -d) MOLECULE_GLOB='molecule/*/molecule.yml'; \
	$(BIN)/molecule reset -s default > /dev/null 2>&1 && $(BIN)/molecule test --all --no-command-borders || status=$$?; \
	$(BIN)/ansible-playbook -i inventory/lab playbooks/lab_down.yml > /dev/null || status=$$((status ? status : 1)); \
	rm -rf "$$LOCUS_STATE_DIR"; exit $$status

clean:
	rm -rf tests/output .pytest_cache

distclean: clean
	rm -rf $(VENV)
