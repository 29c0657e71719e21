# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guard's policy file (the "constitution"): load, merge over the default, validate.

Private API of the collection (may change without notice).

The shipped default lives in ``data/guard/policy.yml`` next to its JSON schema
``data/guard/policy.schema.json``. A user's policy file may be partial: it is merged
over the default (mappings key by key, lists replaced whole) and the result is validated.
Every problem is reported with the file, the dotted key and the reason; YAML syntax errors
and duplicate keys with their line.
"""

from __future__ import annotations

import json
import os
import re

from ansible_collections.locus.infra.plugins.plugin_utils import _datafile, _jsonschema
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _approval

# realpath: a collection tree made of symlinks (pytest-ansible) still finds the data next to plugins/.
DATA_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "..", "data", "guard"))
DEFAULT_POLICY = os.path.join(DATA_DIR, "policy.yml")
POLICY_SCHEMA = os.path.join(DATA_DIR, "policy.schema.json")
REVIEW_SCHEMA = os.path.join(DATA_DIR, "review.schema.json")
POLICY_ENV = "LOCUS_POLICY"
POLICY_VAR = "locus_policy"

LEVELS = ("low", "medium", "high", "critical")
_LIFETIME = re.compile(r"^([1-9][0-9]*)([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_LIFETIME = 7 * 86400


class PolicyError(Exception):
    """The policy file is unusable: the message names the file, the key and the reason."""


def _read_yaml(path):
    try:
        return _datafile.load(path, "policy")
    except _datafile.DataFileError as exc:
        raise PolicyError(str(exc)) from None


def _schema():
    with open(POLICY_SCHEMA, encoding="utf-8") as f:
        return json.load(f)


def review_schema():
    """The JSON schema an AI change review must satisfy (risk, findings, recommendation)."""
    with open(REVIEW_SCHEMA, encoding="utf-8") as f:
        return json.load(f)


def merge(base, override):
    """``override`` merged over ``base``: mappings key by key, anything else replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def key_path(parts):
    """``['risk', 'approval', 'high']`` -> ``risk.approval.high``; list indexes as ``[n]``."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _describe(error):
    """One ``(key, reason)`` per schema error, naming the offending key itself."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known), key=str)
        return [(key_path([*path, k]), f"unknown key (known here: {', '.join(known)})") for k in extra]
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return [(key_path([*path, k]), "missing (required)") for k in missing]
    if error.validator == "oneOf" and error.context:
        # e.g. lifetime: neither an integer nor a duration string
        return [(key_path(path), f"{error.instance!r} is neither " + " nor ".join(
            _short(c) for c in error.context if not c.path))]
    return [(key_path(path), error.message)]


def _short(suberror):
    if suberror.validator == "type":
        return f"of type {suberror.validator_value}"
    if suberror.validator == "pattern":
        return f"a string matching {suberror.validator_value}"
    return suberror.message


def validate(policy, source):
    """Raise :class:`PolicyError` listing every problem of ``policy`` (read from ``source``)."""
    try:
        errors = [p.error for p in _jsonschema.problems(policy, _schema())]
    except _jsonschema.SchemaUnavailable as exc:  # pragma: no cover - a dependency of the collection
        raise PolicyError(str(exc)) from None
    problems = []
    for error in errors:
        if len(error.absolute_path) == 3 and list(error.absolute_path)[:2] == ["approval", "approvers"] \
                and isinstance(error.instance, str):
            problems.append((key_path(error.absolute_path), f"{error.instance!r} is a bare name, which anyone can claim: list "
                             "approvers with their SSH public key ({name: ..., key: 'ssh-ed25519 AAAA...'}, approval.mode: ssh_keys)"))
            continue
        problems.extend(_describe(error))
    if not problems:
        problems.extend(_semantic_problems(policy))
    if problems:
        lines = [f"policy {source}: {key}: {reason}" for key, reason in problems]
        raise PolicyError("\n".join(lines))


def _semantic_problems(policy):
    out = []
    res = policy["resources"]
    if res["warn_threshold_percent"] > res["halt_threshold_percent"]:
        out.append(("resources.warn_threshold_percent",
                    f"{res['warn_threshold_percent']} is above halt_threshold_percent {res['halt_threshold_percent']}"))
    num, den = (int(x) for x in policy["consensus"]["threshold"].split("/"))
    if num > den:
        out.append(("consensus.threshold", f"{num}/{den} is more than the whole roster"))
    lanes = policy["lanes"]
    for key in ("default", "review"):
        if lanes[key] not in lanes["allowed"]:
            out.append((f"lanes.{key}", f"{lanes[key]!r} is not in lanes.allowed ({', '.join(lanes['allowed'])})"))
    try:
        parse_lifetime(policy["approval"]["lifetime"])
    except ValueError as exc:
        out.append(("approval.lifetime", str(exc)))
    out.extend(_approver_problems(policy["approval"]))
    return out


def _approver_problems(approval):
    out, seen = [], {}
    approvers = approval["approvers"]
    if approval["mode"] == "ssh_keys" and not approvers:
        out.append(("approval.approvers", "approval.mode ssh_keys needs at least one approver with an SSH public key"))
    if approval["mode"] == "shared_key" and approvers:
        out.append(("approval.mode", "approvers are listed by key: set approval.mode: ssh_keys (shared_key ignores them)"))
    for n, entry in enumerate(approvers):
        try:
            key = _approval.parse_public_key(entry["key"])
        except ValueError as exc:
            out.append((f"approval.approvers[{n}].key", str(exc)))
            continue
        if key in seen:
            out.append((f"approval.approvers[{n}].key", f"the same key is already listed for {seen[key]}"))
        seen[key] = entry["name"]
    return out


def parse_lifetime(value):
    """Seconds from ``3600``, ``"90s"``, ``"15m"``, ``"1h"`` or ``"1d"`` (at most 7 days)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int):
        seconds = value
    else:
        m = _LIFETIME.match(str(value).strip())
        if not m:
            raise ValueError(f"{value!r} is not a duration (seconds, or a number with s, m, h or d)")
        seconds = int(m.group(1)) * _UNIT[m.group(2)]
    if seconds < 1 or seconds > MAX_LIFETIME:
        raise ValueError(f"{value!r} is outside 1 second .. 7 days")
    return seconds


class Policy:
    """A validated policy; ``data`` is the merged document, ``source``/``sha256`` say where from."""

    def __init__(self, data, source, sha256):
        self.data = data
        self.source = source
        self.sha256 = sha256

    # -- accessors ------------------------------------------------------------------------------
    @property
    def halt_threshold(self):
        return float(self.data["resources"]["halt_threshold_percent"])

    @property
    def warn_threshold(self):
        return float(self.data["resources"]["warn_threshold_percent"])

    def rule_risk(self, rule):
        return self.data["risk"]["rules"][rule]

    def requirement(self, level):
        """``none``, ``human`` or ``deny`` for a risk level."""
        return self.data["risk"]["approval"][level]

    @property
    def human_from(self):
        """The lowest level that needs a human (or is denied), or None."""
        for level in LEVELS:
            if self.requirement(level) != "none":
                return level
        return None

    @property
    def consensus(self):
        """``(numerator, denominator)``: passes iff ``yes * den >= roster * num``."""
        num, den = (int(x) for x in self.data["consensus"]["threshold"].split("/"))
        return num, den

    @property
    def lifetime(self):
        return parse_lifetime(self.data["approval"]["lifetime"])

    @property
    def approval_mode(self):
        """``shared_key`` (HMAC tokens) or ``ssh_keys`` (tokens signed by an approver's SSH key)."""
        return self.data["approval"]["mode"]

    @property
    def approvers(self):
        """The approvers' names (mode ssh_keys)."""
        return sorted({a["name"] for a in self.data["approval"]["approvers"]})

    @property
    def approver_keys(self):
        """``[(name, public key)]`` for ``ssh-keygen -Y verify`` in mode ssh_keys, else None."""
        if self.approval_mode != "ssh_keys":
            return None
        return [(a["name"], a["key"]) for a in self.data["approval"]["approvers"]]

    def summary(self):
        """What a decision records about the policy it applied."""
        return {"source": self.source, "sha256": self.sha256}


def resolve_path(path=None, variables=None, environ=None):
    """The policy to use: ``path``, the variable ``locus_policy``, ``$LOCUS_POLICY``, the default."""
    environ = os.environ if environ is None else environ
    for candidate in (path, (variables or {}).get(POLICY_VAR), environ.get(POLICY_ENV)):
        if candidate:
            return os.path.abspath(os.path.expanduser(str(candidate)))
    return DEFAULT_POLICY


def load_policy(path=None, variables=None, environ=None):
    """Load and validate the policy named by ``path`` / variables / environment / default."""
    source = resolve_path(path, variables, environ)
    default, default_sha = _read_yaml(DEFAULT_POLICY)
    if source == DEFAULT_POLICY:
        validate(default, source)
        return Policy(default, source, default_sha)
    user, sha = _read_yaml(source)
    if "version" not in user:
        raise PolicyError(f"policy {source}: version: missing (required; this collection reads version 1)")
    merged = merge(default, user)
    validate(merged, source)
    return Policy(merged, source, sha)
