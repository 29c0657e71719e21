# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verdicts of the scanners users point at their servers: ssh-audit and sslyze.

Private API of the collection (may change without notice). Controller-only: the scanners run on
the controller (``python -m ssh_audit -j HOST``, ``python -m sslyze --mozilla_config=PROFILE``)
and these functions read what they printed, so that ``playbooks/verify.yml`` and the molecule
scenarios judge them the same way. Nothing here decides what is safe: the scanners do.

- ssh-audit (3.9): ``-j`` prints one JSON object; each algorithm of ``kex``, ``key``, ``enc`` and
  ``mac`` carries ``notes`` with ``fail`` (critical), ``warn`` and ``info`` lists. The exit code is
  0 (good), 1 (warning), 2 (failure), 3 (connection error).
- sslyze (6.3): with ``--mozilla_config`` the text output ends with a "COMPLIANCE AGAINST TLS
  CONFIGURATION" section: ``HOST:PORT: OK - Compliant.`` or ``HOST:PORT: FAILED - Not compliant.``
  followed by ``* key: reason`` lines; the exit code is 1 when a server is not compliant.
"""

from __future__ import annotations

import json
import re

SSH_AUDIT_EXIT = {0: "good", 1: "connection error", 2: "warning", 3: "failure"}  # ssh_audit/exitcodes.py
_SECTIONS = (("kex", "key exchange"), ("key", "host key"), ("enc", "cipher"), ("mac", "MAC"))
_COMPLIANCE = re.compile(r"^\s*(?P<server>\S+): (?P<verdict>OK - Compliant|FAILED - Not compliant|ERROR[^\n]*)\.?\s*$", re.M)
_ISSUE = re.compile(r"^\s*\* (?P<key>[a-z0-9_]+): (?P<reason>.+?)\s*$")


def _result(result):
    if not isinstance(result, dict):
        raise ValueError(f"expected the registered result of the scanner command (a mapping), got {type(result).__name__}")
    rc = result.get("rc")
    if not isinstance(rc, int) or isinstance(rc, bool):
        raise ValueError("the scanner result has no exit code (rc): did the command run?")
    return rc, str(result.get("stdout") or ""), str(result.get("stderr") or "")


def _tail(text, limit=400):
    text = text.strip()
    return text[-limit:] if len(text) > limit else text


def ssh_audit_verdict(result):
    """``{passed, exit, software, algorithms, critical, warnings, error}`` from ``ssh-audit -j`` (its registered result).

    ``algorithms`` lists what the server offers per section (``kex``, ``key``, ``enc``, ``mac``);
    ``critical`` and ``warnings`` list ``{type, algorithm, notes}``. Passed means exit code 0 and no
    ``fail`` or ``warn`` note anywhere: no critical finding and no warning.
    """
    rc, out, err = _result(result)
    verdict = {"passed": False, "exit": SSH_AUDIT_EXIT.get(rc, f"exit code {rc}"), "software": None,
               "algorithms": {}, "critical": [], "warnings": [], "error": None}
    try:
        data = json.loads(out) if out.strip() else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        verdict["error"] = _tail(err or out) or f"ssh-audit printed no JSON ({verdict['exit']})"
        return verdict
    verdict["software"] = (data.get("banner") or {}).get("software")
    for section, what in _SECTIONS:
        verdict["algorithms"][section] = [e.get("algorithm") for e in data.get(section) or []]
        for entry in data.get(section) or []:
            notes = entry.get("notes") or {}
            for level, bucket in (("fail", "critical"), ("warn", "warnings")):
                if notes.get(level):
                    item = {"type": what, "algorithm": entry.get("algorithm"), "notes": list(notes[level])}
                    if entry.get("keysize"):
                        item["keysize"] = entry["keysize"]
                    verdict[bucket].append(item)
    verdict["passed"] = rc == 0 and not verdict["critical"] and not verdict["warnings"]
    if rc != 0 and not verdict["critical"] and not verdict["warnings"]:
        verdict["error"] = _tail(err) or f"ssh-audit ended with {verdict['exit']}"
    return verdict


def sslyze_verdict(result, profile):
    """``{passed, profile, server, compliant, issues, error}`` from ``sslyze --mozilla_config=PROFILE``.

    ``issues`` maps sslyze's check names (``ciphers``, ``tls_curves``, ``maximum_certificate_lifespan``,
    ``certificate_path_validation`` ...) to its reason. Passed means sslyze said ``OK - Compliant``
    and exited 0.
    """
    rc, out, err = _result(result)
    verdict = {"passed": False, "profile": profile, "server": None, "compliant": None, "issues": {}, "error": None}
    section = out.split("COMPLIANCE AGAINST TLS CONFIGURATION", 1)
    if len(section) < 2:
        verdict["error"] = _tail(err or out) or f"sslyze printed no compliance section (exit code {rc})"
        return verdict
    text = section[1]
    if f'"{profile}" configuration' not in text:
        verdict["error"] = f"sslyze did not check the {profile} configuration"
        return verdict
    m = _COMPLIANCE.search(text)
    if not m:
        verdict["error"] = _tail(text) or f"sslyze gave no verdict (exit code {rc})"
        return verdict
    verdict["server"] = m.group("server")
    verdict["compliant"] = m.group("verdict") == "OK - Compliant"
    for line in text[m.end():].splitlines():
        issue = _ISSUE.match(line)
        if issue:
            verdict["issues"][issue.group("key")] = issue.group("reason")
    if m.group("verdict").startswith("ERROR"):
        verdict["error"] = m.group("verdict")
    verdict["passed"] = bool(verdict["compliant"]) and rc == 0 and not verdict["issues"]
    return verdict
