# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Signed agent handovers: a DSSE envelope with an HMAC-SHA256 signature.

Private API of the collection (may change without notice).

Envelope (https://github.com/secure-systems-lab/dsse, v1.0)::

    {"payloadType": "application/vnd.locus.handover+v1+json",
     "payload": "<base64 of the canonical JSON payload>",
     "signatures": [{"keyid": "<key id>", "sig": "<base64 HMAC-SHA256 over PAE(type, payload)>"}]}

PAE = ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``: the type is signed too.
Verification is strict: the envelope has exactly these fields, the base64 is canonical
(re-encoding gives the same text, so no "equivalent" spelling passes), the signature is
compared in constant time, and the payload is canonical JSON valid against
:data:`PAYLOAD_SCHEMA`. Any altered byte of the envelope fails, naming what failed.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import re

from ansible_collections.locus.infra.plugins.plugin_utils import _jsonschema, _redact, _run

PAYLOAD_TYPE = "application/vnd.locus.handover+v1+json"
CLASSIFICATIONS = ("private", "enterprise", "personal")
KEY_ENV = "LOCUS_HANDOVER_KEY"
MIN_KEY_BYTES = 16

_TAG = r"^LOCUS-[A-Z]+[0-9]{8}-[0-9]{3,}$"
PAYLOAD_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": [
        "version",
        "ref_tag",
        "created",
        "source",
        "target",
        "task",
        "context_refs",
        "classification",
        "expected_response_s",
        "respond_by",
    ],
    "properties": {
        "version": {"const": 1},
        "ref_tag": {"type": "string", "pattern": _TAG},
        "created": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"},
        "source": {
            "type": "object",
            "additionalProperties": False,
            "required": ["agent"],
            "properties": {
                "agent": {"type": "string", "minLength": 1, "maxLength": 100},
                "ref_tag": {"type": "string", "pattern": _TAG},
            },
        },
        "target": {
            "type": "object",
            "additionalProperties": False,
            "required": ["agent"],
            "properties": {"agent": {"type": "string", "minLength": 1, "maxLength": 100}},
        },
        "task": {"type": "string", "minLength": 1, "maxLength": 20000},
        "context_refs": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 200},
        "classification": {"enum": list(CLASSIFICATIONS)},
        "expected_response_s": {"type": "integer", "minimum": 1},
        "respond_by": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"},
        "job": {"type": "string"},
    },
}


class HandoverError(Exception):
    """Signing or verification failed; the message names the part at fault."""


class Rejected(HandoverError):
    """An envelope failed verification; the rejection is recorded as ``ref_tag``."""

    def __init__(self, msg, ref_tag):
        super().__init__(msg)
        self.ref_tag = ref_tag


def pae(payload_type, body):
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def canonical(payload):
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_bytes(key):
    if key is None or key == "":
        raise HandoverError(f"no signing key: set the hmac_key option (from a vault) or {KEY_ENV}")
    data = key.encode() if isinstance(key, str) else bytes(key)
    if len(data) < MIN_KEY_BYTES:
        raise HandoverError(f"the signing key is {len(data)} bytes; use at least {MIN_KEY_BYTES} random bytes")
    return data


def default_keyid(key):
    """A key fingerprint (not the key): lets a verifier pick the right key."""
    return "hmac-sha256:" + hashlib.sha256(b"locus-handover-keyid\0" + key_bytes(key)).hexdigest()[:16]


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _unb64(text, what):
    if not isinstance(text, str):
        raise HandoverError(f"{what}: expected a base64 string, got {type(text).__name__}")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise HandoverError(f"{what}: not valid base64") from None
    if _b64(data) != text:
        raise HandoverError(f"{what}: not in canonical base64 form (altered?)")
    return data


def parse_duration(value):
    """Seconds from an int or ``30s``/``15m``/``4h``/``2d``/ISO-8601 ``PT4H`` style string."""
    if isinstance(value, bool):
        raise HandoverError(f"expected response time {value!r} is not a duration")
    if isinstance(value, int):
        seconds = value
    else:
        text = str(value).strip().lower()
        m = re.fullmatch(r"(\d+)\s*([smhd]?)", text)
        iso = re.fullmatch(r"p(?:(\d+)d)?(?:t(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?)?", text)
        if m:
            seconds = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        elif iso and any(iso.groups()):
            d, h, mi, s = (int(g or 0) for g in iso.groups())
            seconds = ((d * 24 + h) * 60 + mi) * 60 + s
        else:
            raise HandoverError(f"expected response time {value!r}: use seconds, 30m, 4h, 2d or PT4H")
    if seconds < 1:
        raise HandoverError(f"expected response time {value!r} must be at least 1 second")
    return seconds


def _ts(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_payload(*, ref_tag, source, target, task, context_refs, classification, expected_response, job=None,
                  source_ref_tag=None, now=None):
    now = (now or datetime.datetime.now(datetime.timezone.utc)).replace(microsecond=0)
    seconds = parse_duration(expected_response)
    payload = {
        "version": 1,
        "ref_tag": ref_tag,
        "created": _ts(now),
        "source": {"agent": source},
        "target": {"agent": target},
        "task": task,
        "context_refs": list(context_refs or []),
        "classification": classification,
        "expected_response_s": seconds,
        "respond_by": _ts(now + datetime.timedelta(seconds=seconds)),
    }
    if source_ref_tag:
        payload["source"]["ref_tag"] = source_ref_tag
    if job:
        payload["job"] = job
    check_payload(payload)
    return payload


def check_payload(payload):
    problem = _jsonschema.first_problem(payload, PAYLOAD_SCHEMA)
    if problem is not None:
        raise HandoverError(f"handover payload {problem}")
    return payload


def sign(payload, key, keyid=None):
    """The DSSE envelope of ``payload`` signed with HMAC-SHA256 under ``key``."""
    check_payload(payload)
    body = canonical(payload)
    sig = hmac.new(key_bytes(key), pae(PAYLOAD_TYPE, body), hashlib.sha256).digest()
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": _b64(body),
        "signatures": [{"keyid": keyid or default_keyid(key), "sig": _b64(sig)}],
    }


def verify(envelope, keys):
    """The payload of ``envelope`` if a signature verifies under ``keys`` (``{keyid: key}``).

    Raises :class:`HandoverError` naming the first problem.
    """
    if isinstance(envelope, (str, bytes)):
        try:
            envelope = json.loads(envelope)
        except ValueError as exc:
            raise HandoverError(f"envelope: not JSON ({exc})") from None
    if not isinstance(envelope, dict):
        raise HandoverError(f"envelope: expected a mapping, got {type(envelope).__name__}")
    extra = set(envelope) - {"payloadType", "payload", "signatures"}
    missing = {"payloadType", "payload", "signatures"} - set(envelope)
    if extra or missing:
        raise HandoverError(
            f"envelope: fields {sorted(envelope)} are not exactly payloadType, payload, signatures"
        )
    if envelope["payloadType"] != PAYLOAD_TYPE:
        raise HandoverError(f"envelope.payloadType {envelope['payloadType']!r} is not {PAYLOAD_TYPE!r}")
    body = _unb64(envelope["payload"], "envelope.payload")
    sigs = envelope["signatures"]
    if not isinstance(sigs, list) or not sigs:
        raise HandoverError("envelope.signatures: expected a non-empty list")
    keys = {kid: key_bytes(k) for kid, k in keys.items()}
    message = pae(envelope["payloadType"], body)
    verified = False
    for i, entry in enumerate(sigs):
        if not isinstance(entry, dict) or set(entry) != {"keyid", "sig"}:
            raise HandoverError(f"envelope.signatures[{i}]: expected exactly keyid and sig")
        sig = _unb64(entry["sig"], f"envelope.signatures[{i}].sig")
        key = keys.get(entry["keyid"])
        if key is None:
            raise HandoverError(f"envelope.signatures[{i}].keyid {entry['keyid']!r} is not a known key")
        expected = hmac.new(key, message, hashlib.sha256).digest()
        if not hmac.compare_digest(sig, expected):
            raise HandoverError(f"envelope.signatures[{i}]: signature does not match (payload or type altered?)")
        verified = True
    if not verified:
        raise HandoverError("envelope: no signature verified")
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise HandoverError(f"envelope.payload: not UTF-8 JSON ({exc})") from None
    if canonical(payload) != body:
        raise HandoverError("envelope.payload: not canonical JSON")
    return check_payload(payload)


# -- the agent_handover task: a recorded handover, a recorded verification ---------------------
def create_recorded(store, args, key, check_mode):
    """Record a HANDOVER and sign its payload (which carries the tag); the agent_handover task's result."""
    key_id = args.get("key_id") or default_keyid(key)
    seconds = parse_duration(args["respond_within"])
    job = _run.run_id()
    record = {
        "kind": "handover",
        "source": args["source"],
        "target": args["target"],
        "task": _redact.redact_text(args["task"]),
        "context_refs": args["context_refs"],
        "classification": args["classification"],
        "expected_response_s": seconds,
        "key_id": key_id,
        "check_mode": check_mode,
        "job": job,
    }
    subject = f"handover {args['source']} -> {args['target']} ({args['classification']}): {args['task'][:80]}"
    with store.transaction() as tx:
        # The tag goes into the signed payload, so it is allocated first, in the same transaction.
        tag = tx.record("HANDOVER", subject, record)
        payload = build_payload(
            ref_tag=tag,
            source=args["source"],
            target=args["target"],
            task=args["task"],
            context_refs=args["context_refs"],
            classification=args["classification"],
            expected_response=seconds,
            source_ref_tag=args.get("source_ref_tag"),
            job=job,
        )
        envelope = sign(payload, key, key_id)
    return {"ref_tag": tag, "envelope": envelope, "payload": payload, "key_id": key_id}


def verify_recorded(store, args, key):
    """Verify ``args["envelope"]`` and record a VALIDATE either way; raises :class:`Rejected` when it fails."""
    keys = {args.get("key_id") or default_keyid(key): key}
    envelope = args["envelope"]
    digest = hashlib.sha256(str(envelope).encode()).hexdigest()
    try:
        payload = verify(envelope, keys)
        if args.get("expect_target") and payload["target"]["agent"] != args["expect_target"]:
            raise HandoverError(
                f"payload.target.agent {payload['target']['agent']!r} is not {args['expect_target']!r}"
            )
    except HandoverError as exc:
        tag = store.record(
            "VALIDATE",
            "handover verification: rejected",
            {"kind": "handover_verify", "valid": False, "error": str(exc), "envelope_sha256": digest, "job": _run.run_id()},
        )
        raise Rejected(str(exc), tag) from None
    tag = store.record(
        "VALIDATE",
        f"handover verification: {payload['ref_tag']} valid",
        {
            "kind": "handover_verify",
            "valid": True,
            "handover_ref_tag": payload["ref_tag"],
            "source": payload["source"]["agent"],
            "target": payload["target"]["agent"],
            "envelope_sha256": digest,
            "job": _run.run_id(),
        },
    )
    return {"valid": True, "payload": payload, "ref_tag": tag, "handover_ref_tag": payload["ref_tag"]}
