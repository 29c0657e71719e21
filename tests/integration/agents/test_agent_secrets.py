"""Secrets inside LLM prompts and answers stay out of the store, cache included (both engines).

The Anthropic Messages API double answers with text that echoes what a model could leak: the
API key, a value the run knows to be secret (as the action plugins learn them), a private key
and a password assignment. The AGENT record holds only hashes of the prompt; the answer cache
(``locus_agent_cache``, part of the store) must not keep the secrets either. A cache hit then
answers with them masked.
"""

from __future__ import annotations

import json
from pathlib import Path

from agentlib import ask

from ansible_collections.locus.infra.plugins.plugin_utils import _redact
from locus_testlib import raw_store_bytes, run_playbook

CLAUDE = {"backend": "anthropic", "lane": "enterprise", "model": "claude-sonnet-5-5"}
KNOWN = "Kn0wnVaultValue-4417"
PEM_BODY = "b3BlbnNzaC1rZXktdjEAAAAAPlantedPemBody9931"
PEM = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\n-----END OPENSSH PRIVATE KEY-----"
ASSIGNED = "AssignedPw-5521"


def _everything(store):
    rows = store.query("SELECT key, backend, model, response, source_tag FROM locus_agent_cache")
    return raw_store_bytes(store).decode("utf-8", "replace") + json.dumps(rows) + json.dumps(list(store.iter_records()))


def test_an_answer_echoing_secrets_is_cached_masked(store, claude, claude_env):
    _redact.remember(KNOWN)  # what locus.infra.agent's action plugin learns from the run's vault
    try:
        leak = f"the config holds {KNOWN}, key {claude.api_key}, {PEM} and password={ASSIGNED}"
        claude.reply(leak)
        first = ask(store, claude_env, task=f"Summarise the config (db password {KNOWN}).", context={"motd": KNOWN}, **CLAUDE)
        assert first["text"] == leak  # the caller gets the model's answer as it came
        stored = _everything(store)
        leaked = [s for s in (KNOWN, claude.api_key, PEM_BODY, ASSIGNED) if s in stored]
        assert not leaked, f"reached the store: {leaked}"
        rows = store.query("SELECT response FROM locus_agent_cache")
        assert len(rows) == 1 and _redact.MASK in json.loads(rows[0][0])["text"]
        again = ask(store, claude_env, task=f"Summarise the config (db password {KNOWN}).", context={"motd": KNOWN}, **CLAUDE)
        assert again["cached"] is True and len(claude.requests) == 1  # no second request
        assert KNOWN not in again["text"] and "the config holds ********" in again["text"]
    finally:
        _redact.forget_all()


def test_the_agent_lookup_memoises_its_answer_masked(store_env, open_test_store, claude, claude_env, tmp_path):
    from ansible.parsing.vault import VaultLib, VaultSecret

    vault = VaultLib([("default", VaultSecret(b"lookup-vault-password"))])
    (tmp_path / "vault-pass").write_bytes(b"lookup-vault-password")
    (tmp_path / "vaulted.yml").write_text(
        "db_secret: !vault |\n" + "\n".join("  " + ln for ln in vault.encrypt(KNOWN).decode().splitlines()) + "\n")
    claude.reply(f"the config holds {KNOWN} and {PEM}")
    proc = run_playbook(Path(__file__).parent / "playbooks" / "agent_lookup_secrets.yml", env={**store_env, **claude_env},
                        check=False, args=["-e", f"planted_dir={tmp_path}", "--vault-password-file", str(tmp_path / "vault-pass")])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert len(claude.requests) == 1 and KNOWN in json.dumps(claude.requests[0]["body"])  # the model did see it
    assert "ANSWER the config holds ********" in proc.stdout, proc.stdout[-3000:]  # the memoised answer, masked
    store = open_test_store()
    memo = store.query("SELECT value FROM locus_memo")
    assert len(memo) == 1
    stored = _everything(store) + json.dumps(memo)
    leaked = [s for s in (KNOWN, PEM_BODY) if s in stored]
    assert not leaked, f"reached the store: {leaked}"
