"""Signed handovers: DSSE envelope, HMAC-SHA256, strict verification."""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import hmac
import json
import string

import pytest

from ansible_collections.locus.infra.plugins.plugin_utils.agents import _handover

KEY = "0123456789abcdef0123456789abcdef"
B64 = string.ascii_letters + string.digits + "+/"


def _payload(**over):
    fields = {
        "ref_tag": "LOCUS-HANDOVER20261121-007",
        "source": "security",
        "target": "devops",
        "task": "Disable TLS 1.0 on web1",
        "context_refs": ["LOCUS-AGENT20261121-003", "netbox:vm/12"],
        "classification": "private",
        "expected_response": "2h",
        "source_ref_tag": "LOCUS-AGENT20261121-003",
        "now": datetime.datetime(2026, 11, 21, 8, 0, tzinfo=datetime.timezone.utc),
    }
    fields.update(over)
    return _handover.build_payload(**fields)


@pytest.fixture
def envelope():
    return _handover.sign(_payload(), KEY)


def _keys():
    return {_handover.default_keyid(KEY): KEY}


def test_round_trip_and_fields(envelope):
    payload = _handover.verify(envelope, _keys())
    assert payload["source"] == {"agent": "security", "ref_tag": "LOCUS-AGENT20261121-003"}
    assert payload["target"] == {"agent": "devops"}
    assert payload["expected_response_s"] == 7200
    assert payload["respond_by"] == "2026-11-21T10:00:00Z"
    assert envelope["payloadType"] == _handover.PAYLOAD_TYPE
    assert json.loads(base64.b64decode(envelope["payload"])) == payload
    # the signature is DSSE's: HMAC over PAE(type, body), recomputed here from the spec
    body = base64.b64decode(envelope["payload"])
    pae = b"DSSEv1 %d %s %d %s" % (len(_handover.PAYLOAD_TYPE), _handover.PAYLOAD_TYPE.encode(), len(body), body)
    assert base64.b64decode(envelope["signatures"][0]["sig"]) == hmac.new(KEY.encode(), pae, hashlib.sha256).digest()
    # the key never appears in the envelope
    assert KEY not in json.dumps(envelope)


def test_every_altered_payload_character_is_rejected(envelope):
    text = envelope["payload"]
    for i, char in enumerate(text):
        if char == "=":
            continue
        for other in (B64[(B64.index(char) + 1) % 64], B64[(B64.index(char) + 32) % 64]):
            tampered = dict(envelope, payload=text[:i] + other + text[i + 1 :])
            with pytest.raises(_handover.HandoverError):
                _handover.verify(tampered, _keys())


def test_every_altered_signature_character_is_rejected(envelope):
    sig = envelope["signatures"][0]["sig"]
    for i, char in enumerate(sig):
        if char == "=":
            continue
        tampered = copy.deepcopy(envelope)
        tampered["signatures"][0]["sig"] = sig[:i] + B64[(B64.index(char) + 1) % 64] + sig[i + 1 :]
        with pytest.raises(_handover.HandoverError):
            _handover.verify(tampered, _keys())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.update(payloadType="application/vnd.locus.handover+v2+json"), "payloadType"),
        (lambda e: e["signatures"][0].update(keyid="someone-else"), "not a known key"),
        (lambda e: e.update(extra="x"), "not exactly"),
        (lambda e: e.pop("signatures"), "not exactly"),
        (lambda e: e.update(signatures=[]), "non-empty"),
        (lambda e: e["signatures"][0].update(note="x"), "exactly keyid and sig"),
        (lambda e: e.update(payload=e["payload"] + " "), "base64"),
    ],
)
def test_altered_envelope_fields_are_rejected_naming_the_part(envelope, mutate, message):
    mutate(envelope)
    with pytest.raises(_handover.HandoverError, match=message):
        _handover.verify(envelope, _keys())


def test_non_canonical_base64_is_rejected():
    # Same decoded bytes, another spelling: flip an unused low bit of the last data character
    # (2 unused bits with one "=" of padding, 4 with two). Pick a task length that pads.
    envelope = next(
        e for e in (_handover.sign(_payload(task="Disable TLS 1.0" + "!" * n), KEY) for n in range(3)) if e["payload"].endswith("=")
    )
    text = envelope["payload"]
    stripped = text.rstrip("=")
    pad = "=" * (len(text) - len(stripped))
    respelled = stripped[:-1] + B64[B64.index(stripped[-1]) ^ 1] + pad
    assert respelled != text and base64.b64decode(respelled) == base64.b64decode(text)
    with pytest.raises(_handover.HandoverError, match="canonical"):
        _handover.verify(dict(envelope, payload=respelled), _keys())


def test_wrong_key_is_rejected(envelope):
    other = "fedcba9876543210fedcba9876543210"
    with pytest.raises(_handover.HandoverError, match="does not match"):
        _handover.verify(envelope, {_handover.default_keyid(KEY): other})


def test_a_correctly_signed_but_invalid_payload_is_rejected_with_its_path():
    bad = _payload()
    bad["classification"] = "public"
    body = _handover.canonical(bad)
    sig = hmac.new(KEY.encode(), _handover.pae(_handover.PAYLOAD_TYPE, body), hashlib.sha256).digest()
    envelope = {
        "payloadType": _handover.PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode(),
        "signatures": [{"keyid": _handover.default_keyid(KEY), "sig": base64.b64encode(sig).decode()}],
    }
    with pytest.raises(_handover.HandoverError, match=r"\$\.classification"):
        _handover.verify(envelope, _keys())


def test_non_canonical_json_payload_is_rejected():
    body = json.dumps(_payload(), indent=1).encode()  # valid JSON, but not the canonical bytes
    sig = hmac.new(KEY.encode(), _handover.pae(_handover.PAYLOAD_TYPE, body), hashlib.sha256).digest()
    envelope = {
        "payloadType": _handover.PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode(),
        "signatures": [{"keyid": _handover.default_keyid(KEY), "sig": base64.b64encode(sig).decode()}],
    }
    with pytest.raises(_handover.HandoverError, match="canonical JSON"):
        _handover.verify(envelope, _keys())


def test_envelope_as_json_text_verifies(envelope):
    assert _handover.verify(json.dumps(envelope), _keys())["ref_tag"] == "LOCUS-HANDOVER20261121-007"


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"classification": "secret"}, r"\$\.classification"),
        ({"ref_tag": "not-a-tag"}, r"\$\.ref_tag"),
        ({"task": ""}, r"\$\.task"),
        ({"expected_response": "soon"}, "expected response time"),
        ({"expected_response": 0}, "at least 1 second"),
    ],
)
def test_bad_handover_fields_are_refused_when_built(over, message):
    with pytest.raises(_handover.HandoverError, match=message):
        _payload(**over)


@pytest.mark.parametrize(("text", "seconds"), [(90, 90), ("45s", 45), ("30m", 1800), ("4h", 14400), ("2d", 172800), ("PT1H30M", 5400), ("P1D", 86400)])
def test_durations(text, seconds):
    assert _handover.parse_duration(text) == seconds


def test_short_or_missing_keys_are_refused():
    with pytest.raises(_handover.HandoverError, match="LOCUS_HANDOVER_KEY"):
        _handover.sign(_payload(), None)
    with pytest.raises(_handover.HandoverError, match="at least 16"):
        _handover.sign(_payload(), "short")
