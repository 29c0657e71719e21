# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The operations reports (status report, health review) as Markdown and self-contained HTML.

Private API of the collection (may change without notice). Controller-only. A report is
first a *document* - title, facts, sections of paragraphs, tables and charts - built from
the collected data (:func:`status_document`, :func:`health_document`), then rendered twice
(:func:`markdown`, :func:`html`). The HTML page inlines its CSS and SVG charts: it opens
offline and requests nothing. Every text that came from a host, a site or a model is escaped.
"""

from __future__ import annotations

import datetime
import html as _html

from ansible_collections.locus.infra.plugins.module_utils._config_tree import write_entry
from ansible_collections.locus.infra.plugins.plugin_utils.ops import _ops_charts, _ops_health

KINDS = ("status_report", "health_review")
# Every report made from agent reviews carries this when they came from the embedded backend
# (here, and through the locus.infra.embedded_advisory filter in the playbooks' reports).
EMBEDDED_NOTE = (
    "The embedded backend runs a 135M-parameter model (SmolLM2-135M) so that the pipeline works offline; a model this small "
    'cannot judge risk (on a labelled set of risky changes it answered "low" 11 times of 12), so its verdict is advisory only: '
    "the deterministic findings - the guard's analysers, `verify`, the audit trail - decide. "
    "For a real review use the Ollama or Anthropic backend (docs/agents.md)."
)


def embedded_advisory(backends):
    """:data:`EMBEDDED_NOTE` when ``backends`` (one name or several) include the embedded one, else ``""``."""
    backends = [backends] if isinstance(backends, str) else list(backends or ())
    return EMBEDDED_NOTE if "embedded" in backends else ""


def _pct(value):
    return "-" if value is None else f"{value:g} %"


def _gib(n):
    return "-" if n is None else f"{n / 2**30:.1f} GiB"


def _table(columns, rows):
    return {"type": "table", "columns": list(columns), "rows": [["" if c is None else str(c) for c in r] for r in rows]}


def _para(text):
    return {"type": "text", "text": text}


def _items(items):
    return {"type": "list", "items": [str(i) for i in items]} if items else None


def _chart(name, svg, alt):
    return {"type": "chart", "name": name, "svg": svg, "alt": alt}


def _section(title, *blocks):
    return {"title": title, "blocks": [b for b in blocks if b]}


def node_usage(hosts, proxmox=None):
    """``[{name, cpu, memory, disk, source}]`` in percent from the host probes and Proxmox nodes."""
    out = []
    for name, node in sorted((proxmox or {}).items()):
        if not isinstance(node, dict):
            continue

        def pct(key, node=node):
            value = node.get(key)
            return None if value is None else round(100.0 * float(value), 1)

        out.append({"name": f"{name} (PVE)", "cpu": pct("cpu_ratio"), "memory": pct("memory_ratio"), "disk": pct("disk_ratio"), "source": "proxmox"})
    for name, h in sorted(hosts.items()):
        probe = h.get("probe") or {}
        if probe.get("unreachable") or not probe:
            continue
        root = next((d for d in probe.get("disks") or [] if d["mount"] == "/"), (probe.get("disks") or [None])[0])
        out.append({"name": name, "cpu": probe.get("cpu_percent"), "memory": (probe.get("memory") or {}).get("used_percent"),
                    "disk": root["used_percent"] if root else None, "source": "host"})
    return out


def _header(kind, title, ref_tag, scope, now):
    return {"kind": kind, "title": title, "ref_tag": ref_tag, "generated": now.strftime("%Y-%m-%d %H:%M:%S UTC"), "scope": scope}


def _health_section(check_list):
    s = _ops_health.summary(check_list)
    verdict = "all up" if s["state"] == "up" else f"{len(s['down'])} check(s) DOWN"
    rows = [[c["host"], c["check"], c["state"].upper(), _brief(c["detail"])] for c in check_list if c["state"] != "up"]
    return _section(
        "Health", _para(f"{s['counts']['checks']} checks: {verdict}, {len(s['warn'])} warning(s)."),
        _table(["host", "check", "state", "detail"], rows) if rows else _para("Every check passed."),
    )


def _brief(value, limit=160):
    if isinstance(value, dict):
        text = ", ".join(f"{k}={v}" for k, v in value.items() if v not in (None, "", [], {}))
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _backup_section(backups, tags):
    """Backup coverage of the VMs the inventory describes: a table, the ages against the limit, the VALIDATE tags."""
    if not backups or not backups.get("vms"):
        return None
    if not backups.get("configured", True):
        return _section("Backups", _para(f"Not checked for {len(backups['vms'])} VM(s): no Proxmox VE API configured "
                                         "(set PROXMOX_HOST and a token, or proxmox_vm_api_host)."))
    check_list = _ops_health.backup_checks(backups)
    failed = [c for c in check_list if not c["passed"]]
    max_age = check_list[0]["detail"]["max_age_hours"]
    verdict = "all passed" if not failed else "FAILED: " + ", ".join(f"{c['host']} ({c['detail']['error']})" for c in failed)
    rows = [[c["host"], f"{c['detail']['vm']} ({c['detail']['vmid'] or '-'})", ", ".join(c["detail"]["jobs"]) or "-",
             c["detail"]["last_backup"] or "-", "-" if c["detail"]["age_hours"] is None else f"{c['detail']['age_hours']:g}",
             "passed" if c["passed"] else "FAILED", tags.get(c["host"], "-")] for c in check_list]
    blocks = [_para(f"{len(check_list) - len(failed)} of {len(check_list)} VM(s) covered by an enabled backup job with a backup "
                    f"younger than {max_age:g} h: {verdict}."),
              _table(["host", "VM (VMID)", "jobs", "last backup", "age h", "check", "VALIDATE"], rows)]
    ages = [{"name": c["detail"]["vm"], "age_hours": c["detail"]["age_hours"]} for c in check_list if c["detail"]["age_hours"] is not None]
    if ages:
        blocks.append(_chart("backups", _ops_charts.backup_age(ages, max_age), "age of each VM's newest backup against the limit"))
    return _section(f"Backups (newer than {max_age:g} h)", *blocks)


def status_document(data, policy, ref_tag, now=None, cert_warn_days=14, backup_tags=None):
    """The status report: hosts and roles, usage, BGP, sites and certificates, K3s, Ollama, backups, audit, spend, guard.

    ``backup_tags``: ``{host: VALIDATE tag}`` of the "vm backed up" records made for this report.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    hosts, sites, facts = data.get("hosts") or {}, _ops_health.site_answers(data.get("sites"), now), data.get("facts") or {}
    doc = _header("status_report", "locus.infra status report", ref_tag, data.get("scope") or "all", now)
    check_list = _ops_health.checks(hosts, sites, policy)
    doc["state"] = _ops_health.summary(check_list)["state"]
    sections = [_health_section(check_list)]

    rows = []
    for name, h in sorted(hosts.items()):
        probe = h.get("probe") or {}
        reach = "unreachable" if probe.get("unreachable") or not probe else probe.get("system_state", "?")
        units = ", ".join(f"{u['name']}:{u['active']}" for u in probe.get("units") or []) or "-"
        rows.append([name, ", ".join(h.get("roles") or []) or "-", reach, units])
    sections.append(_section("Hosts and roles", _table(["host", "roles (groups)", "systemd", "role units"], rows)))

    usage = node_usage(hosts, data.get("proxmox"))
    blocks = [_table(["node", "CPU", "memory", "disk /"], [[n["name"], _pct(n["cpu"]), _pct(n["memory"]), _pct(n["disk"])] for n in usage])
              if usage else _para("No usage readings: no host answered.")]
    if usage:
        blocks.append(_chart("usage", _ops_charts.usage(usage, policy.halt_threshold), "node CPU, memory and disk against the halt line"))
    if data.get("proxmox_error"):
        blocks.append(_para(f"Proxmox VE: node usage could not be read: {_ops_health.clean(data['proxmox_error'])}"))
    elif data.get("proxmox") is None:
        blocks.append(_para("Proxmox VE: not configured for this report (set PROXMOX_HOST and a token to include node usage)."))
    sections.append(_section(f"Resources (warning {policy.warn_threshold:g} %, halt {policy.halt_threshold:g} %)", *blocks))

    rows = []
    for name, h in sorted(hosts.items()):
        for s in (h.get("probe") or {}).get("bgp") or []:
            fams = "; ".join(f"{c['family']} {c['imported']} in / {c['exported']} out" for c in s.get("channels") or [])
            rows.append([name, s["name"], s.get("neighbor") or "-", s.get("neighbor_as") or "-", s.get("bgp_state") or s.get("state"), fams or "-"])
    if rows:
        sections.append(_section("BGP sessions and prefixes", _table(["router", "session", "neighbour", "AS", "state", "prefixes"], rows)))

    if sites:
        rows = [[s.get("host"), s.get("name"), s.get("status") or s.get("error") or "-", s.get("not_after") or "-",
                 "-" if s.get("days_left") is None else s["days_left"]] for s in sites]
        blocks = [_table(["host", "site", "answer", "certificate valid until", "days left"], rows)]
        if any(s.get("days_left") is not None for s in sites):
            blocks.append(_chart("certificates", _ops_charts.cert_days(sites, cert_warn_days), "days left per certificate"))
        sections.append(_section("Sites and certificates", *blocks))

    k3s = [[name, n["name"], "Ready" if n.get("ready") else "NOT ready", ",".join(n.get("roles") or []) or "-", n.get("version") or "-"]
           for name, h in sorted(hosts.items()) for n in (h.get("probe") or {}).get("k3s_nodes") or []]
    if k3s:
        sections.append(_section("K3s nodes", _table(["seen from", "node", "state", "roles", "version"], k3s)))
    models = [[name, m["name"], m.get("parameter_size") or "-", m.get("quantization") or "-", _gib(m.get("size_bytes"))]
              for name, h in sorted(hosts.items()) for m in (h.get("probe") or {}).get("ollama_models") or []]
    if models:
        sections.append(_section("Ollama models", _table(["host", "model", "parameters", "quantisation", "size"], models)))

    sections.append(_backup_section(data.get("backups"), backup_tags or {}))
    sections.extend(_store_sections(facts))
    doc["sections"] = [s for s in sections if s]
    return doc


def _store_sections(facts):
    out = []
    audit, chain = facts.get("audit"), facts.get("chain")
    if audit:
        r, v, g = audit["runs"], audit["validate"], audit["guard"]
        verdict = "not checked" if not chain else (f"verified ({chain['count']} records, head {chain['last_tag']})" if chain["ok"]
                                                   else f"DOES NOT VERIFY: {chain['problem']['message']}")
        out.append(_section(
            f"Audit trail, last {audit['days']} days (since {audit['since']})",
            _items([f"chain: {verdict}", f"{audit['records']} records; runs: {r['started']} started, {r['finished']} finished, "
                    f"{r['failed']} failed, {r['interrupted']} interrupted",
                    f"VALIDATE: {v['passed']} checks passed, {v['failed']} failed; guard decisions: {v['allow']} allow, "
                    f"{v['needs_approval']} needs approval, {v['deny']} deny",
                    "records by action: " + (", ".join(f"{k} {n}" for k, n in audit["by_action"].items()) or "none")]),
            _chart("audit", _ops_charts.audit_activity(audit["tasks_per_day"]), "task records per day by outcome"),
        ))
    spend = facts.get("spend")
    if spend:
        rows = [["all agents", f"{spend['today_usd']:.6f}", f"{spend['daily_budget_usd']:.2f}", _pct(spend["today_percent"]), "-"]]
        rows += [[a["agent"], f"{a['usd']:.6f}", f"{a['budget_usd']:.2f}", _pct(a["used_percent"]), a["calls"]] for a in spend["agents"]]
        out.append(_section(f"Agent spend on {spend['day']} (UTC)", _table(["agent", "spent USD", "budget USD", "used", "calls"], rows),
                            _chart("spend", _ops_charts.spend(spend), "agent spend against budget")))
    guard = facts.get("guard")
    if guard:
        halt = guard["halt"]
        g = (audit or {}).get("guard") or {}
        halted = f"HALTED by {halt['tag']} since {halt['since']}: {halt['reason']}" if halt["halted"] else "not halted"
        lines = [f"emergency halt: {halted}"]
        if g:
            lines.append(f"in the period: {g['halts']} halt(s), {g['resumes']} resume(s), {g['approvals_issued']} approval(s) issued, "
                         f"{g['approvals_used']} used, {g['approvals_refused']} refused")
        lines += [f"waiting for approval: {w['tag']} ({w['risk']}) {w['subject']} - `locus approve {w['tag']}`" for w in guard["waiting_approval"]]
        out.append(_section("Halts and approvals", _items(lines)))
    return out


def health_document(data, policy, ref_tag, now=None):
    """The health review: deterministic findings first, then the agents' reviews and the guard's decision."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    doc = _header("health_review", "locus.infra health review", ref_tag, data.get("scope") or "all", now)
    decision = data.get("decision") or {}
    findings = data.get("findings") or []
    doc["state"] = decision.get("decision") or "unknown"
    det = [f for f in findings if f.get("source", "deterministic") == "deterministic"]
    ai = [f for f in findings if f.get("source", "deterministic") != "deterministic"]
    since = data.get("since")
    sections = [_section(
        "Verdict",
        _para(f"Decision {decision.get('ref_tag', '-')}: **{decision.get('decision', '-')}** - risk {decision.get('risk', '-')} "
              f"(deterministic {decision.get('deterministic_risk', '-')}, agents {decision.get('agent_risk') or 'none'}). "
              "The agents may raise the risk, never lower the deterministic one."),
        _items(decision.get("reasons") or []),
        _para(f"A human must approve: `{decision['approve_command']}`") if decision.get("approve_command") else None,
    )]
    rows = [[f.get("risk", "-"), f["rule"], (f.get("evidence") or {}).get("host", "-"), f["message"], _brief(_evidence(f))] for f in det]
    sections.append(_section(
        f"Deterministic findings ({len(det)})",
        _para("Journal errors counted since the last review " + (f"({since})." if since else "(this is the first review: since boot).")),
        _table(["risk", "rule", "host", "finding", "evidence"], rows) if rows else _para("No findings: every check passed."),
    ))
    review_blocks = []
    for r in data.get("reviews") or []:
        role = r.get("role") or r.get("item") or "agent"
        out = r.get("output") if isinstance(r.get("output"), dict) else None
        if r.get("failed") or out is None:
            review_blocks.append(_para(f"{role}: unavailable ({_brief(r.get('msg') or 'no answer')}) - the facts stand."))
            continue
        head = f"{role} ({r.get('ref_tag', '-')}, {r.get('backend', '-')} {r.get('model', '')}): risk {out.get('risk')}, recommends {out.get('recommendation')}"
        review_blocks.append(_para(head + (" (cached)" if r.get("cached") else "")))
        review_blocks.append(_items(out.get("findings") or []))
    check = data.get("cross_check")
    if isinstance(check, dict) and not check.get("failed") and "agree" in check:
        review_blocks.append(_para(f"Cross-check by the {check.get('verifier', 'orchestrator')} ({check.get('ref_tag', '-')}): "
                                   f"{'agrees' if check.get('agree') else 'DISAGREES'}."))
        review_blocks.append(_items(check.get("issues") or []))
    if embedded_advisory(data.get("backend") or ""):
        review_blocks.insert(0, _para(EMBEDDED_NOTE))
    if ai:
        review_blocks.append(_table(["risk", "rule", "finding"], [[f.get("risk"), f["rule"], f["message"]] for f in ai]))
    sections.append(_section("Agent reviews", *review_blocks) if review_blocks else _section("Agent reviews", _para("No agents were asked.")))
    sections.extend(_store_sections({k: v for k, v in (data.get("facts") or {}).items() if k in ("guard",)}))
    doc["sections"] = sections
    return doc


def _evidence(f):
    return {k: v for k, v in (f.get("evidence") or {}).items() if k != "host"}


# ------------------------------------------------------------------ rendering ----------------
def _md_cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(doc, html_name=None):
    lines = [f"# {doc['title']}", "", f"**{doc['ref_tag']}** · {doc['generated']} · scope `{doc['scope']}` · state **{doc['state']}**", ""]
    if html_name:
        lines += [f"Charts: see the HTML version `{html_name}`.", ""]
    for s in doc["sections"]:
        lines += [f"## {s['title']}", ""]
        for b in s["blocks"]:
            if b["type"] == "text":
                lines += [b["text"], ""]
            elif b["type"] == "list":
                lines += [f"- {i}" for i in b["items"]] + [""]
            elif b["type"] == "table":
                lines.append("| " + " | ".join(b["columns"]) + " |")
                lines.append("|" + "---|" * len(b["columns"]))
                lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b["rows"]]
                lines.append("")
            elif b["type"] == "chart":
                lines += [f"_Chart: {b['alt']} (in the HTML version)._", ""]
    lines += ["---", f"Recorded as {doc['ref_tag']} in the tamper-evident audit trail (`locus audit show --tag {doc['ref_tag']}`).", ""]
    return "\n".join(lines)


CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:2rem auto;max-width:70rem;color:#1a202c;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;border-bottom:1px solid #cbd5e0;padding-bottom:.2rem;margin-top:2rem}
.meta{color:#4a5568}.state-up,.state-allow{color:#2f855a}.state-down,.state-deny,.state-needs_approval{color:#c53030}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.5rem 0}th,td{border:1px solid #e2e8f0;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#edf2f7}figure{margin:1rem 0}figure svg{width:100%;height:auto;max-width:800px;display:block}
figcaption{color:#4a5568;font-size:.85rem}code{background:#edf2f7;padding:0 .2rem}footer{margin-top:2rem;color:#4a5568;font-size:.85rem}
"""


def _inline(text):
    """Escape, then render the two inline marks the documents use: **bold** and `code`."""
    out, bold, code = [], False, False
    for part in _split_marks(text):
        if part == "**" and not code:
            out.append("</strong>" if bold else "<strong>")
            bold = not bold
        elif part == "`":
            out.append("</code>" if code else "<code>")
            code = not code
        else:
            out.append(_html.escape(part))
    if bold:
        out.append("</strong>")
    if code:
        out.append("</code>")
    return "".join(out)


def _split_marks(text):
    parts, buf, i = [], "", 0
    while i < len(text):
        if text.startswith("**", i):
            parts += [buf, "**"]
            buf, i = "", i + 2
        elif text[i] == "`":
            parts += [buf, "`"]
            buf, i = "", i + 1
        else:
            buf += text[i]
            i += 1
    parts.append(buf)
    return [p for p in parts if p]


def html(doc):
    e = _html.escape
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           # Nothing is fetched: no scripts, styles or images from anywhere.
           "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
           f"<title>{e(doc['title'])} {e(doc['ref_tag'])}</title><style>{CSS}</style></head><body>",
           f"<h1>{e(doc['title'])}</h1>",
           f'<p class="meta"><strong>{e(doc["ref_tag"])}</strong> · {e(doc["generated"])} · scope <code>{e(doc["scope"])}</code> · '
           f'state <strong class="state-{e(doc["state"])}">{e(doc["state"])}</strong></p>']
    for s in doc["sections"]:
        out.append(f"<section><h2>{e(s['title'])}</h2>")
        for b in s["blocks"]:
            if b["type"] == "text":
                out.append(f"<p>{_inline(b['text'])}</p>")
            elif b["type"] == "list":
                out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b["items"]) + "</ul>")
            elif b["type"] == "table":
                out.append("<table><thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in b["columns"]) + "</tr></thead><tbody>")
                out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b["rows"]]
                out.append("</tbody></table>")
            elif b["type"] == "chart":
                # pygal's SVG: made by the library from numbers and escaped labels.
                out.append(f'<figure class="chart" data-chart="{e(b["name"])}">{b["svg"]}<figcaption>{e(b["alt"])}</figcaption></figure>')
        out.append("</section>")
    out.append(f"<footer>Recorded as {e(doc['ref_tag'])} in the tamper-evident audit trail "
               f"(<code>locus audit show --tag {e(doc['ref_tag'])}</code>).</footer></body></html>")
    return "\n".join(out)


def write_atomic(path, text, mode=0o640):
    """Write ``text`` to ``path`` whole: the collection's one file writer (a temporary file in the
    same directory, its mode, a rename; nothing left behind on failure)."""
    write_entry(path, text.encode("utf-8"), mode)
