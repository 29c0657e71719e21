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
	shellcheck

.PHONY: help setup apt venv demo test lint unit sanity clean distclean

help:
	@echo "make demo   - set up everything, then run the demo on the embedded defaults"
	@echo "make test   - set up everything, then run the whole test suite"
	@echo "make setup  - set-up only (apt packages, .venv, Python packages)"

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

$(VENV)/.locus-stamp: requirements.lock pyproject.toml
	@mkdir -p $(LOCUS_CACHE_DIR)
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@[ -x $(BIN)/uv ] || $(BIN)/python -m pip install -q uv==0.13.8
	$(BIN)/uv pip sync -q --native-tls --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --native-tls --python $(BIN)/python --no-deps .
	@# This checkout *is* ansible_collections.locus.infra: link it where Ansible and
	@# Python (via a .pth file) look for collections.
	@mkdir -p $(COLLECTION_ROOT)/ansible_collections/locus
	@ln -sfn $(CURDIR) $(COLLECTION_ROOT)/ansible_collections/locus/infra
	@echo $(COLLECTION_ROOT) > $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/locus_collections.pth
	@touch $@

demo: setup
	$(BIN)/ansible-playbook playbooks/demo.yml

test: setup
	$(MAKE) --no-print-directory lint unit sanity

lint:
	$(BIN)/ruff check plugins tests bench
	$(BIN)/ansible-lint --profile production --offline -q

unit:
	$(BIN)/pytest -q tests

sanity:
	tests/sanity.sh

clean:
	rm -rf tests/output .pytest_cache

distclean: clean
	rm -rf $(VENV)
