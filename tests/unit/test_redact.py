from ansible_collections.locus.infra.plugins.plugin_utils import _redact

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


def test_secret_key_spellings():
    for key in ("clientSecret", "PGPASSWORD", "pwd", "X-Api-Key", "MYSQL_PWD", "requirepass", "authToken", "becomePass",
                "aws_secret_access_key", "wifi_psk", "Proxy-Authorization", "sessionId", "license_key"):
        assert _redact.is_secret_key(key), key
    for key in ("proxy_pass", "fastcgi_pass", "password_file", "token_url", "max_tokens", "input_tokens", "author",
                "bypass", "passthrough", "tokenizer", "keys", "secret_name"):
        assert not _redact.is_secret_key(key), key


def test_secret_forms_in_text():
    forms = {
        '{"clientSecret": "cs-9f8e7d", "user": "bob"}': "cs-9f8e7d",
        "host=db password=Pg$ecret dbname=x": "Pg$ecret",
        "host=db password='a b c' dbname=x": "a b c",
        "postgresql://u:p@ss/w rd@db.example:5432/x": "p@ss/w rd",
        "redis://:emptyuser@cache:6379/0": "emptyuser",
        "postgresql://u@h/db?sslmode=require&password=qpw": "qpw",
        "tool --token=tok123 --user bob": "tok123",
        "tool --password hunter22 -v": "hunter22",
        "Authorization: Bearer abc": "abc",
        "Authorization: Token 0123456789abcdef": "0123456789abcdef",
        "Failed to connect to the host via ssh: password=hunter22secret": "hunter22secret",
        "<user>bob</user><password>xmlpw</password>": "xmlpw",
        "PGPASSWORD=pgpw123 psql -h db": "pgpw123",
    }
    for text, secret in forms.items():
        out = _redact.redact_text(text)
        assert secret not in out and _redact.MASK in out, (text, out)
    assert _redact.redact_text('{"clientSecret": "x1", "user": "bob"}') == '{"clientSecret": "********", "user": "bob"}'
    assert _redact.redact_text("the password for bob is wrong") == "the password for bob is wrong"  # prose kept


def test_known_secrets_are_masked_wherever_they_appear():
    _redact.remember({"db_password": "Kn0wn-Secret-Value"})
    try:
        assert _redact.redact_text("rotate Kn0wn-Secret-Value now") == f"rotate {_redact.MASK} now"
        assert _redact.scrub({"a": ["x Kn0wn%2DSecret-Value"]}) == {"a": ["x Kn0wn%2DSecret-Value"]}  # not a variant we make
        assert _redact.scrub({"k": "url p=Kn0wn-Secret-Value"}) == {"k": f"url p={_redact.MASK}"}
    finally:
        _redact.forget_all()


def test_database_urls_are_parsed_for_messages():
    assert _redact.redact_url("postgresql://u:p@ss/w rd@127.0.0.1:1/x") == "postgresql://u:********@127.0.0.1:1/x"
    assert _redact.redact_url("postgresql://u@h:5/db?password=qpw&sslmode=require") == "postgresql://u@h:5/db?password=********&sslmode=require"
    assert _redact.redact_url("host=h password='x y' user=u") == "host=h password=******** user=u"
    assert _redact.url_secrets("postgresql://:only@h/db") == ["only"]


def test_non_utf8_text_is_escaped_deterministically():
    assert _redact.clean_text("a\udcffb\ud800") == "a\\xffb\\ud800"
    assert _redact.clean_text(b"caf\xe9") == "caf\\xe9"
    assert _redact.clean_text("a\x00b") == "a\x00b" and _redact.clean_text("a\x00b", nul=True) == "a\\x00b"


def test_plaintext_secret_spans_keep_references_and_placeholders_out():
    def found(text):
        return [text[s:e] for s, e, _key in _redact.plaintext_secret_spans(text)]

    assert found("db_password = hunter2hunter2") == ["hunter2hunter2"]
    assert found("api_key: 'abcdefgh12345678'") == ["'abcdefgh12345678'"]
    assert found(f"password = {_redact.MASK}") == [_redact.MASK]  # already masked upstream: still a plain-text secret
    for ref in ("{{ vault_pw }}", "${DB_PASSWORD}", "$DB_PASSWORD", "/etc/app/pw", "~/.pw", "./pw", "!vault |", "changeme",
                "none", "true", "******", "<your token>", "server.key", "tls.pem", "token_file", "abc"):
        assert found(f"password = {ref}") == [], ref
    # credential-shaped values count whatever they are assigned to, and however short the key
    assert found("x = sk-ant-api03-abcdefghijklmnop") == ["sk-ant-api03-abcdefghijklmnop"]
    assert _redact.is_reference("'{{ x }}'") and not _redact.is_reference("hunter2hunter2")
