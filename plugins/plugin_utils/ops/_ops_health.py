# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Judging health facts: heartbeat checks and the health review's deterministic findings.

Private API of the collection (may change without notice). Controller-only. Input is what
``locus.infra.ops_probe`` read on each host (``hosts``), what the sites answered
(``sites``) and what the state store says (:mod:`_ops_facts`). Resource thresholds are
judged by the guard's own analyser (:func:`_guard_rules.analyse_resources`), so a heartbeat,
a report and a guard decision never disagree about "too full".
"""

from __future__ import annotations

import datetime
import json

from ansible_collections.locus.infra.plugins.plugin_utils import _redact
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard_rules

DOWN, WARN, UP = "down", "warn", "up"


class OpsError(Exception):
    """Bad input: the message names what and where."""


def clean(text, limit=300):
    """Text from a host or a tool, with credential-shaped values and ``key=secret`` literals masked."""
    return _guard_rules.mask_secrets(_redact.redact_text(str(text)))[:limit]


def _require_mapping(value, where):
    if not isinstance(value, dict):
        raise OpsError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def site_answers(sites, now=None):
    """The site answers, each with ``days_left`` (whole days until ``not_after``) where a certificate was seen."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    out = []
    for n, s in enumerate(sites or []):
        s = dict(_require_mapping(s, f"sites[{n}]"))
        if s.get("days_left") is None and s.get("not_after"):
            try:
                end = datetime.datetime.strptime(str(s["not_after"])[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
            except ValueError as exc:
                raise OpsError(f"sites[{n}].not_after: {s['not_after']!r} is not YYYY-MM-DDTHH:MM:SS") from exc
            s["days_left"] = (end - now).days
        out.append(s)
    return out


def host_resources(hosts, cpu=False):
    """``{"<host> memory": {used_percent}, "<host> disk /": {...}}`` (and ``"<host> cpu"``) for the guard's analyser.

    CPU only when ``cpu``: a busy CPU is load, not an exhausted resource.
    """
    out = {}
    for host, h in sorted(hosts.items()):
        probe = h.get("probe") or {}
        if (probe.get("memory") or {}).get("used_percent") is not None:
            out[f"{host} memory"] = {"used_percent": probe["memory"]["used_percent"]}
        for d in probe.get("disks") or []:
            out[f"{host} disk {d['mount']}"] = {"used_percent": d["used_percent"]}
        if cpu and probe.get("cpu_percent") is not None:
            out[f"{host} cpu"] = {"used_percent": probe["cpu_percent"]}
    return out


def _check(name, host, state, detail):
    return {"check": name, "host": host, "state": state, "passed": state != DOWN, "detail": detail}


def _established(session):
    return (session.get("bgp_state") or session.get("info") or "").startswith("Established")


def checks(hosts, sites=(), policy=None, cpu=False):
    """Heartbeat checks: ``[{check, host, state (up|warn|down), passed, detail}]``.

    ``hosts``: ``{name: {"probe": <ops_probe result>, "expect_units": [...], "expect_bgp": [...]}}``;
    an unreachable host's probe carries ``unreachable``. ``sites``: results of the site probes
    (``host``, ``name``, ``status``, ``expected``, ``error``, ``days_left``). Memory and disk at or past
    the policy's halt threshold are down, past the warning threshold warn; CPU only when ``cpu``
    (a busy CPU is load, not an outage).
    """
    _require_mapping(hosts, "hosts")
    out = []
    for host, h in sorted(hosts.items()):
        _require_mapping(h, f"hosts.{host}")
        probe = h.get("probe") or {}
        if probe.get("unreachable") or not probe or probe.get("failed"):
            why = clean(probe.get("msg") or "no answer")
            out.append(_check("reachable", host, DOWN, why))
            continue
        out.append(_check("reachable", host, UP, "answered"))
        state = probe.get("system_state") or "unknown"
        out.append(_check("systemd running", host, UP if state == "running" else DOWN,
                          {"state": state, "failed_units": probe.get("failed_units") or []}))
        seen = {u["name"]: u for u in probe.get("units") or []}
        for unit in h.get("expect_units") or []:
            u = seen.get(unit) or {"active": "unknown", "load": "unknown", "sub": ""}
            out.append(_check(f"unit {unit} active", host, UP if u["active"] == "active" else DOWN,
                              {"active": u["active"], "sub": u.get("sub"), "load": u.get("load")}))
        sessions = probe.get("bgp")
        expect_bgp = h.get("expect_bgp")
        if sessions is not None or expect_bgp:
            by_name = {s["name"]: s for s in sessions or []}
            for name in (expect_bgp if expect_bgp is not None else sorted(by_name)):
                s = by_name.get(name)
                prefixes = sum(c.get("imported", 0) for c in (s or {}).get("channels") or [])
                out.append(_check(f"bgp {name} established", host, UP if s and _established(s) else DOWN,
                                  {"state": (s or {}).get("bgp_state") or (s or {}).get("state") or "missing",
                                   "neighbor": (s or {}).get("neighbor"), "imported": prefixes}))
        for node in probe.get("k3s_nodes") or []:
            out.append(_check(f"k3s node {node['name']} ready", host, UP if node.get("ready") else DOWN,
                              {"roles": node.get("roles"), "version": node.get("version")}))
        for err in probe.get("errors") or []:
            if err.startswith(("K3s nodes", "Ollama models", "BGP")):
                out.append(_check("read " + err.split(":", 1)[0], host, DOWN, clean(err)))
    if policy is not None:
        resources = host_resources(hosts, cpu)
        flagged = {f["evidence"]["resource"]: f for f in _guard_rules.analyse_resources(resources, policy.halt_threshold, policy.warn_threshold)}
        for name, facts in sorted(resources.items()):
            host, what = name.split(" ", 1)
            f = flagged.get(name)
            state = UP if f is None else (DOWN if f["rule"] == "resource_exhausted" else WARN)
            out.append(_check(f"{what} under thresholds", host, state,
                              {"used_percent": facts["used_percent"], "warn": policy.warn_threshold, "halt": policy.halt_threshold}))
    for s in site_answers(sites):
        ok = s.get("status") in (s.get("expected") or [200])
        out.append(_check(f"site {s.get('name')} answering", s.get("host") or "", UP if ok else DOWN,
                          {"status": s.get("status"), "expected": s.get("expected") or [200], "error": clean(s["error"]) if s.get("error") else None}))
    return out


def summary(check_list):
    """``{state, down: [...], warn: [...], counts}``: down when any check is down."""
    down = [f"{c['host']}: {c['check']}" for c in check_list if c["state"] == DOWN]
    warn = [f"{c['host']}: {c['check']}" for c in check_list if c["state"] == WARN]
    return {"state": DOWN if down else UP, "down": down, "warn": warn,
            "counts": {"checks": len(check_list), "down": len(down), "warn": len(warn)}}


def backup_checks(backups):
    """The "vm backed up" VALIDATE items of the VMs the inventory describes, as verify.yml records them.

    ``backups``: ``{vms: {host: VM name}, max_age_hours, info: proxmox_backup_info's result or None,
    error: why it could not be read or None}``. A VM passes when an enabled job covers it and its newest
    backup is younger than ``max_age_hours``; a VM the cluster lacks, or an unreadable API, fails.
    Returns ``[{check, host, passed, detail}]`` sorted by host.
    """
    backups = _require_mapping(backups, "data.backups")
    vms = _require_mapping(backups.get("vms") or {}, "data.backups.vms")
    info = backups.get("info") or {}
    by_name = _require_mapping(info.get("by_name") or {}, "data.backups.info.by_name")
    try:
        max_age = float(backups.get("max_age_hours") or 26)
    except (TypeError, ValueError) as exc:
        raise OpsError(f"data.backups.max_age_hours: {backups.get('max_age_hours')!r} is not a number") from exc
    error = clean(backups["error"]) if backups.get("error") else ""
    out = []
    for host, name in sorted(vms.items()):
        g = by_name.get(str(name))
        if g is not None:
            _require_mapping(g, f"data.backups.info.by_name[{name}]")
        fresh = g and g.get("age_hours") is not None and g["age_hours"] < max_age  # as proxmox_backup_info's "fresh"
        # A disabled job makes no backups: only enabled jobs ("jobs") cover a VM here.
        passed = bool(g and g.get("jobs") and fresh)
        problem = (error or ("" if g else f"no VM {name} in the cluster")
                   or ("" if g.get("jobs") else "only disabled backup jobs select it" if g.get("covered") else "no backup job covers it"))
        if not problem and not passed:
            problem = "no backup" if g.get("age_hours") is None else f"newest backup {g['age_hours']:g} h old"
        out.append({"check": "vm backed up", "host": str(host), "passed": passed,
                    "detail": {"vm": str(name), "vmid": (g or {}).get("vmid"), "jobs": (g or {}).get("jobs") or [],
                               "covered": bool((g or {}).get("covered")), "last_backup": (g or {}).get("last_backup_iso"),
                               "age_hours": (g or {}).get("age_hours"), "max_age_hours": max_age, "error": problem}})
    return out


def _magnitude(count):
    """``1-9``, ``10-99``, ``100-999`` ...: a count as its order of magnitude."""
    low = 10 ** (len(str(int(count))) - 1)
    return f"{low}-{low * 10 - 1}"


def _finding(rule, message, **evidence):
    return {"rule": rule, "message": clean(message), "evidence": _redact.redact(evidence)}


# What the reviewers may see of a finding's evidence: what and where, never a number that moves between
# two reviews of the same state (percent, days left, cursor, position, time) - the agents' answers are
# cached by their input, so a volatile number would ask the model again on every run.
_REVIEW_KEYS = ("host", "resource", "metric", "unit", "active", "state", "site", "status", "session", "node", "scope", "kind", "check")
_RISK_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def review_facts(found, limit=25):
    """The reviewers' view of the guard's ``findings``: rule, risk and the stable evidence, counts bucketed.

    Sorted (most risky first) and deduplicated, so two runs over the same state give the same list
    (and so the same agent cache key); at most ``limit`` facts. The findings themselves still go to
    the guard unchanged: this only decides what the model reads.
    """
    if not isinstance(found, list):
        raise OpsError(f"review_facts: findings must be a list, got {type(found).__name__}")
    facts = {}
    for n, f in enumerate(found):
        if not isinstance(f, dict) or not f.get("rule"):
            raise OpsError(f"review_facts: findings[{n}] is not a finding (a mapping with a rule)")
        ev = f.get("evidence") if isinstance(f.get("evidence"), dict) else {}
        fact = {"rule": str(f["rule"]), "risk": str(f.get("risk") or "unknown")}
        fact.update({k: clean(ev[k], 80) for k in _REVIEW_KEYS if isinstance(ev.get(k), (str, int)) and not isinstance(ev[k], bool)})
        if isinstance(ev.get("count"), int) and ev["count"] > 0:
            fact["count"] = _magnitude(ev["count"])
        facts[json.dumps(fact, sort_keys=True)] = fact
    ordered = sorted(facts.items(), key=lambda kv: (_RISK_ORDER.get(kv[1]["risk"], 4), kv[0]))
    return [fact for _key, fact in ordered][:limit]


def findings(hosts, sites=(), store_facts=None, cert_warn_days=14, budget_warn_percent=85.0):
    """The health review's deterministic findings: ``[{rule, message, evidence{host, ...}}]``.

    Resources are left to the guard (pass :func:`host_resources` as its ``resources``), which
    turns them into ``resource_pressure``/``resource_exhausted`` findings by the same policy.
    """
    out = []
    for c in checks(hosts, sites):
        if c["state"] != DOWN:
            continue
        host, name, d = c["host"], c["check"], c["detail"]
        if name.startswith("read "):
            rule = {"read BGP": "bgp_down", "read K3s nodes": "k3s_node_not_ready"}.get(name, "unit_failed")
            out.append(_finding(rule, f"{host}: could not {name}: {d}", host=host, check=name))
        elif name == "reachable":
            out.append(_finding("host_unreachable", f"{host} did not answer: {d}", host=host))
        elif name == "systemd running":
            out.append(_finding("systemd_degraded", f"systemd on {host} is {d['state']}", host=host, state=d["state"],
                                failed_units=d["failed_units"]))
        elif name.startswith("unit "):
            unit = name.split()[1]
            out.append(_finding("unit_failed", f"{unit} on {host} is {d['active']}", host=host, unit=unit, **d))
        elif name.startswith("bgp "):
            out.append(_finding("bgp_down", f"BGP session {name.split()[1]} on {host} is {d['state']}", host=host,
                                session=name.split()[1], **d))
        elif name.startswith("k3s node"):
            out.append(_finding("k3s_node_not_ready", f"K3s node {name.split()[2]} seen from {host} is not Ready", host=host,
                                node=name.split()[2], **d))
        elif name.startswith("site "):
            out.append(_finding("site_down", f"site {name.split()[1]} on {host} answered {d['status'] or d['error']}",
                                host=host, site=name.split()[1], **d))
    for host, h in sorted(hosts.items()):
        probe = h.get("probe") or {}
        units_named = {f["evidence"].get("unit") for f in out if f["evidence"].get("host") == host}
        for unit in probe.get("failed_units") or []:
            if unit not in units_named and unit.removesuffix(".service") not in units_named:
                out.append(_finding("unit_failed", f"{unit} on {host} failed", host=host, unit=unit, active="failed"))
        journal = probe.get("journal") or {}
        if journal.get("count"):
            top = journal.get("units") or []
            # The message gives the order of magnitude, the evidence the counts: the reviewers see the message,
            # and a few more errors of the same kind must not make a new review (the agents' cache key).
            out.append(_finding(
                "journal_errors",
                f"{_magnitude(journal['count'])} journal error(s) on {host} since the last review"
                + (f", most from {top[0]['unit']}" if top else ""),
                host=host, count=journal["count"], units=[{"unit": u["unit"], "count": u["count"]} for u in top[:5]],
            ))
    for s in site_answers(sites):
        days = s.get("days_left")
        if days is None:
            continue
        if days < 0:
            out.append(_finding("cert_expired", f"the certificate of {s.get('name')} expired {-days} day(s) ago", host=s.get("host"),
                                site=s.get("name"), not_after=s.get("not_after"), days_left=days))
        elif days <= cert_warn_days:
            out.append(_finding("cert_expiring", f"the certificate of {s.get('name')} expires in {days} day(s)", host=s.get("host"),
                                site=s.get("name"), not_after=s.get("not_after"), days_left=days, warn_days=cert_warn_days))
    facts = store_facts or {}
    chain = facts.get("chain")
    if chain and not chain.get("ok"):
        problem = chain.get("problem") or {}
        out.append(_finding("audit_chain_broken", f"the audit trail does not verify: {problem.get('message', 'unknown problem')}",
                            host="controller", kind=problem.get("kind"), position=problem.get("position"), tag=problem.get("tag")))
    spend = facts.get("spend")
    if spend:
        if spend.get("today_percent") is not None and spend["today_percent"] >= budget_warn_percent:
            out.append(_finding("budget_nearly_spent", f"agents spent {spend['today_percent']} % of today's budget "
                                f"({spend['today_usd']} of {spend['daily_budget_usd']} USD)", host="controller",
                                scope="daily", used_percent=spend["today_percent"], warn=budget_warn_percent))
        for a in spend.get("agents") or []:
            if a.get("used_percent") is not None and a["used_percent"] >= budget_warn_percent:
                out.append(_finding("budget_nearly_spent", f"agent {a['agent']} spent {a['used_percent']} % of its daily budget",
                                    host="controller", scope=f"agent {a['agent']}", used_percent=a["used_percent"], warn=budget_warn_percent))
    return out
