from ansible_collections.locus.infra.plugins.module_utils import _redact

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"


def test_secret_keys_are_masked_whole():
    out = _redact.redact({"password": "hunter2", "api_token": "abc", "ANTHROPIC_API_KEY": "x" * 30, "name": "web1"})
    assert out == {"password": _redact.MASK, "api_token": _redact.MASK, "ANTHROPIC_API_KEY": _redact.MASK, "name": "web1"}


def test_non_secret_keys_keep_their_values():
    out = _redact.redact({"passthrough": "yes", "tokenizer": "bpe", "keys": ["a"], "author": "me"})
    assert out == {"passthrough": "yes", "tokenizer": "bpe", "keys": ["a"], "author": "me"}


def test_secret_looking_values_are_masked_anywhere():
    text = (
        f"key {PRIVATE_KEY} then sk-ant-api03-abcdefghijklmnop and "
        "postgresql://locus:s3cr3tpw@db:5432/locus and Authorization: Bearer abcdefghijklmnopqrstuvwxyz "
        "and PVEAPIToken=root@pam!ci=1234-5678"
    )
    out = _redact.redact({"cmd": text, "nested": [{"x": "sk-ant-api03-zzzzzzzzzzzz"}]})
    for secret in ("b3BlbnNzaC1rZXktdjEAAAAA", "sk-ant-api03", "s3cr3tpw", "abcdefghijklmnopqrstuvwxyz", "1234-5678"):
        assert secret not in str(out)
    assert "postgresql://" in out["cmd"] and "@db:5432/locus" in out["cmd"]


def test_literal_secrets_are_masked():
    assert _redact.redact("value=Tr0ub4dor&3", secrets=["Tr0ub4dor&3"]) == f"value={_redact.MASK}"


def test_long_strings_are_cut():
    out = _redact.redact("a" * 10000)
    assert len(out) < 2200 and "7952 more characters" in out


def test_empty_secret_values_stay_empty():
    # an empty password is not a secret, and saying so helps debugging
    assert _redact.redact({"password": ""}) == {"password": ""}
