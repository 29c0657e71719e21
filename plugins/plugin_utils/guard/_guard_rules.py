# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guard's deterministic analysers: predicted changes in, findings out.

Private API of the collection (may change without notice).

Input is a list of normalised changes (see :func:`normalise`): what Ansible would run or
has predicted, per host and task: the module (``action``) and its arguments, the host's
groups, and file diffs (before/after text, or a unified diff). Each analyser looks at the
facts only and returns findings ``{rule, risk, message, evidence}``; the policy assigns
each rule its risk. Nothing here calls a model.

Rules: ``vm_delete``, ``vm_stop``, ``vm_migrate``, ``backup_reduced``, ``bgp_filter``, ``bgp_export_all``, ``bgp_neighbor``,
``public_bind``, ``auth_removed``, ``tls_removed``, ``crypto_weakened``, ``k3s_server``, ``plaintext_secret``,
``resource_pressure``, ``resource_exhausted``, ``unpredictable``, ``check_failed``
(``agent_reject`` is raised by the decision when an AI review recommends rejection). The
health rules (``host_unreachable`` ... ``budget_nearly_spent``) are judged outside, on facts
read from the hosts, and reach the guard as ``operation.findings``.
"""

from __future__ import annotations

import difflib
import json
import re

from ansible_collections.locus.infra.plugins.module_utils import _nginx_model, _ssh_policy
from ansible_collections.locus.infra.plugins.plugin_utils import _redact

RULES = {
    "vm_delete": "deletes a virtual machine",
    "vm_stop": "stops or restarts a virtual machine",
    "backup_reduced": "deletes a Proxmox backup job or drops guests from one",
    "vm_migrate": "moves a virtual machine to another node",
    "bgp_filter": "changes a BGP import/export filter (route leak risk)",
    "bgp_export_all": "exports all routes to a BGP neighbour (route leak)",
    "bgp_neighbor": "adds, removes or changes a BGP neighbour",
    "public_bind": "exposes a service on all addresses (0.0.0.0 / [::])",
    "auth_removed": "removes authentication or access control from a live nginx site",
    "tls_removed": "removes TLS from a live nginx site",
    "crypto_weakened": "weakens the SSH algorithm policy or a Mozilla TLS profile (legacy algorithm, old profile, weakening override)",
    "k3s_server": "touches a K3s server (control plane, embedded etcd quorum)",
    "plaintext_secret": "writes a secret in plain text where others can read it",
    "resource_pressure": "a resource is past the warning threshold",
    "resource_exhausted": "a resource is past the halt threshold",
    "unpredictable": "a task whose change cannot be predicted or reviewed",
    "check_failed": "the check run failed; the prediction is incomplete",
    "agent_reject": "an AI reviewer recommends rejecting the change",
    # Health findings (playbooks/health_review.yml, computed by locus.infra.ops_facts and given
    # to the guard as operation.findings).
    "host_unreachable": "a managed host does not answer",
    "systemd_degraded": "systemd on a host is not running (degraded, starting, ...)",
    "unit_failed": "a unit failed, or a unit a role owns is not active",
    "journal_errors": "errors in a host's journal since the last review",
    "bgp_down": "a BGP session is not established",
    "site_down": "a site does not answer as expected",
    "k3s_node_not_ready": "a K3s node is not Ready",
    "cert_expiring": "a site's certificate expires soon",
    "cert_expired": "a site's certificate has expired",
    "audit_chain_broken": "the audit trail does not verify",
    "budget_nearly_spent": "agent spend is near a budget",
}

MASK = _redact.MASK
MAX_EVIDENCE = 240  # characters of a config line kept as evidence

# ------------------------------------------------------------------ secrets ------------------
# Every pattern, and the rule for which assigned values are references rather than literals,
# lives in _redact (plaintext_secret_spans); the guard only reports what it finds.
_secret_spans = _redact.plaintext_secret_spans


def mask_secrets(text):
    """``text`` with every secret-looking value replaced by the mask, nothing cut.

    Used by the changes callback before a diff is written to disk or shown to a model;
    the analyser treats the mask in an added line as evidence of a plain-text secret.
    """
    if not text:
        return text
    return _redact.mask_spans(text, _secret_spans(text))


def secret_in(line):
    """A short description of the secret-looking value in ``line``, or None."""
    spans = _secret_spans(line)
    if any(key is None for _s, _e, key in spans):
        return "a credential-shaped value"
    if MASK in line:
        return "a value masked as a secret"
    for _s, _e, key in spans:
        return f"a literal value for {key!r}"
    return None


# ------------------------------------------------------------------ normalising ---------------
def _text(value):
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"


def parse_unified(text):
    """Split a unified diff (``git diff``, ``diff -u``) into ``[{path, before, after}]``.

    ``before``/``after`` are rebuilt from the hunks (context plus removed/added lines), so
    the block structure around each change is known as far as the hunk shows it.
    """
    files, cur = [], None
    for line in (text or "").splitlines():
        if line.startswith("--- ") and not line.startswith("--- -"):
            cur = {"path": _strip_prefix(line[4:]), "before": [], "after": []}
            files.append(cur)
            continue
        if line.startswith("+++ ") and cur is not None and not cur["after"] and not cur["before"]:
            after_path = _strip_prefix(line[4:])
            if after_path != "/dev/null":
                cur["path"] = after_path
            continue
        if line.startswith("diff ") or line.startswith("index "):
            continue
        if cur is None:
            cur = {"path": "", "before": [], "after": []}
            files.append(cur)
        if line.startswith("@@"):
            # "@@ -12,5 +12,5 @@ protocol bgp rtr2 {": the enclosing block, for context
            heading = line.split("@@", 2)[2].strip() if line.count("@@") >= 2 else ""
            if heading.endswith("{"):
                cur["before"].append(heading)
                cur["after"].append(heading)
            continue
        if line.startswith("+"):
            cur["after"].append(line[1:])
        elif line.startswith("-"):
            cur["before"].append(line[1:])
        elif line.startswith(" ") or line == "":
            cur["before"].append(line[1:])
            cur["after"].append(line[1:])
        elif line.startswith("\\"):
            continue
    return [
        {"path": f["path"], "before": "\n".join(f["before"]) + "\n" if f["before"] else "",
         "after": "\n".join(f["after"]) + "\n" if f["after"] else ""}
        for f in files
    ]


def _strip_prefix(name):
    name = name.split("\t", 1)[0].strip()
    if name.startswith(("a/", "b/")):
        name = name[2:]
    return name


def _diff_entries(diff):
    """Ansible's ``diff`` result (a dict or a list of dicts) as ``[{path, before, after}]``."""
    if not diff:
        return []
    if isinstance(diff, dict):
        diff = [diff]
    if not isinstance(diff, list):
        raise ValueError(f"a diff must be a mapping or a list of mappings, got {type(diff).__name__}")
    out = []
    for n, d in enumerate(diff):
        if not isinstance(d, dict):
            raise ValueError(f"diff[{n}] must be a mapping with before/after (or prepared), got {type(d).__name__}")
        if d.get("prepared"):
            out.extend(parse_unified(str(d["prepared"])))
        if "before" in d or "after" in d:
            out.append({
                "path": str(d.get("after_header") or d.get("before_header") or d.get("path") or ""),
                "before": _text(d.get("before")) or "",
                "after": _text(d.get("after")) or "",
            })
    return out


CHANGE_KEYS = {
    "host", "task", "task_path", "play", "action", "args", "groups", "diff", "file", "path", "before", "after",
    "status", "msg", "item", "censored",
}
STATUSES = ("changed", "unpredictable", "failed")


def normalise(changes=None, diff_text=None, default_host=""):
    """One list of changes ``{host, task, action, args, groups, status, msg, files}``.

    ``changes`` is a list of planned changes or the ``changes`` of the changes callback's
    file; ``diff_text`` a unified diff. Raises ``ValueError`` naming the bad item and key.
    """
    out = []
    for n, c in enumerate(changes or []):
        where = f"changes[{n}]"
        if not isinstance(c, dict):
            raise ValueError(f"{where} must be a mapping (host, task, action, args, diff ...), got {type(c).__name__}")
        unknown = sorted(set(c) - CHANGE_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(CHANGE_KEYS))})")
        args = c.get("args") or {}
        if not isinstance(args, dict):
            raise ValueError(f"{where}.args must be a mapping, got {type(args).__name__}")
        groups = c.get("groups") or []
        if not isinstance(groups, list):
            raise ValueError(f"{where}.groups must be a list of group names")
        status = c.get("status") or "changed"
        if status not in STATUSES:
            raise ValueError(f"{where}.status must be one of {', '.join(STATUSES)}, got {status!r}")
        try:
            files = _diff_entries(c.get("diff"))
        except ValueError as exc:
            raise ValueError(f"{where}.{exc}") from exc
        if "before" in c or "after" in c:
            files.append({"path": str(c.get("file") or c.get("path") or ""), "before": _text(c.get("before")) or "",
                          "after": _text(c.get("after")) or ""})
        out.append({
            "host": str(c.get("host") or default_host),
            "task": str(c.get("task") or ""),
            "task_path": str(c.get("task_path") or ""),
            "action": str(c.get("action") or ""),
            "args": args,
            "groups": sorted(str(g) for g in groups),
            "status": status,
            "msg": str(c.get("msg") or ""),
            "censored": bool(c.get("censored")),
            "files": files,
        })
    if diff_text:
        for f in parse_unified(diff_text):
            out.append({"host": default_host, "task": "", "task_path": "", "action": "", "args": {}, "groups": [],
                        "status": "changed", "msg": "", "censored": False, "files": [f]})
    return out


# ------------------------------------------------------------------ text helpers -------------
def _strip_comment(line):
    return line.split("#", 1)[0].rstrip()


def _block_context(lines):
    """For each line, the headers of the blocks (``name {``) it sits in, outermost first."""
    stack, out = [], []
    for raw in lines:
        line = _strip_comment(raw)
        out.append(tuple(stack))
        for m in re.finditer(r"([^{};]*)\{|\}", line):
            if m.group(0) == "}":
                if stack:
                    stack.pop()
            else:
                stack.append(" ".join(m.group(1).split()))
    return out


class FileChange:
    """Before/after text of one file with its added and removed lines and their block context."""

    def __init__(self, path, before, after):
        self.path = path or ""
        self.before = before or ""
        self.after = after or ""
        self.before_lines = self.before.splitlines()
        self.after_lines = self.after.splitlines()
        ctx_before = _block_context(self.before_lines)
        ctx_after = _block_context(self.after_lines)
        self.removed, self.added = [], []  # (lineno, text, context)
        sm = difflib.SequenceMatcher(None, self.before_lines, self.after_lines, autojunk=False)
        for op, i1, i2, j1, j2 in sm.get_opcodes():
            if op in ("replace", "delete"):
                self.removed.extend((i + 1, self.before_lines[i], ctx_before[i]) for i in range(i1, i2))
            if op in ("replace", "insert"):
                self.added.extend((j + 1, self.after_lines[j], ctx_after[j]) for j in range(j1, j2))

    def changed_lines(self):
        for lineno, text, ctx in self.removed:
            yield "-", lineno, text, ctx
        for lineno, text, ctx in self.added:
            yield "+", lineno, text, ctx


def _ev(change, file=None, line=None, sign=None, lineno=None, **extra):
    ev = {"host": change["host"], "task": change["task"]}
    if change.get("action"):
        ev["action"] = change["action"]
    if file is not None:
        ev["file"] = file.path
    if line is not None:
        text = mask_secrets(line.strip())
        ev["line"] = f"{sign}{lineno}: {text[:MAX_EVIDENCE]}" if sign else text[:MAX_EVIDENCE]
    ev.update(extra)
    return ev


def _finding(rule, message, evidence):
    return {"rule": rule, "message": message, "evidence": evidence}


# ------------------------------------------------------------------ analysers ----------------
def _short_action(action):
    return (action or "").rsplit(".", 1)[-1]


def analyse_vm(change, settings):
    if _short_action(change["action"]) not in settings.get("vm_modules", ()):
        return []
    args = change["args"]
    state = str(args.get("state") or "").lower()
    name = args.get("name") or args.get("vmid") or args.get("hostname") or "?"
    if state in ("absent", "removed", "undefined", "destroyed", "deleted"):
        return [_finding("vm_delete", f"deletes VM {name} (state={state})", _ev(change, vm=str(name), state=state))]
    if state == "migrated":
        target = str(args.get("node") or args.get("target") or "?")
        return [_finding("vm_migrate", f"moves VM {name} to node {target}", _ev(change, vm=str(name), node=target))]
    if state in ("stopped", "restarted", "shutdown", "rebooted", "paused"):
        return [_finding("vm_stop", f"{'restarts' if state in ('restarted', 'rebooted') else 'stops'} VM {name} (state={state})",
                         _ev(change, vm=str(name), state=state))]
    return []


def _json_side(text):
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def analyse_backup_job(change):
    """``backup_reduced``: a backup job deleted, disabled, or backing up fewer guests (its diff
    shows the job keys that change: ``vmid`` losing VMIDs, ``exclude`` gaining some, ``all`` or
    ``pool`` given up)."""
    if _short_action(change["action"]) != "proxmox_backup_job":
        return []
    args = change["args"]
    job = str(args.get("id") or "?")
    if str(args.get("state") or "").lower() == "absent":
        return [_finding("backup_reduced", f"deletes backup job {job}", _ev(change, job=job, state="absent"))]
    out = []
    for f in change["files"]:
        before, after = _json_side(f.before), _json_side(f.after)
        if before is None or after is None:
            continue
        reasons = []
        dropped = sorted(set(before.get("vmid") or []) - set(after.get("vmid") or [])) if "vmid" in after else []
        if dropped and after.get("vmid"):
            reasons.append(f"drops VMIDs {', '.join(map(str, dropped))}")
        added = sorted(set(after.get("exclude") or []) - set(before.get("exclude") or [])) if "exclude" in after else []
        if added:
            reasons.append(f"excludes VMIDs {', '.join(map(str, added))}")
        if before.get("all") is True and after.get("all") is False:
            reasons.append("no longer backs up all guests")
        if before.get("pool") and "pool" in after and after.get("pool") != before.get("pool"):
            reasons.append(f"no longer backs up pool {before['pool']}")
        if before.get("enabled") is True and after.get("enabled") is False:
            reasons.append("disables the schedule")
        if reasons:
            out.append(_finding("backup_reduced", f"backup job {job}: {'; '.join(reasons)}",
                                _ev(change, job=job, reduced="; ".join(reasons))))
    return out


_BIRD_PATH = re.compile(r"bird", re.IGNORECASE)
_TOP_BLOCKS = ("protocol", "template", "filter", "function")
_BGP_PROTOCOL = re.compile(r"^\s*(protocol|template)\s+bgp\b", re.IGNORECASE)


def _is_bird(f):
    return bool(_BIRD_PATH.search(f.path)) or "protocol bgp" in f.before or "protocol bgp" in f.after


def analyse_bird(change, f):
    if not _is_bird(f):
        return []
    out = []
    for sign, lineno, text, ctx in f.changed_lines():
        line = _strip_comment(text).strip()
        if not line:
            continue
        in_bgp = next((c for c in ctx if _BGP_PROTOCOL.match(c)), None)
        # In a diff fragment the enclosing protocol may lie outside the hunk: assume BGP then.
        unknown = not any(c.split()[0].lower() in _TOP_BLOCKS for c in ctx if c.split())
        in_filter = next((c for c in ctx if c.lower().startswith("filter ")), None)
        verb = "adds" if sign == "+" else "removes"
        if _BGP_PROTOCOL.match(line) or re.match(r"^neighbou?r\b", line, re.IGNORECASE):
            out.append(_finding("bgp_neighbor", f"{verb} a BGP neighbour line{' in ' + in_bgp if in_bgp else ''}",
                                _ev(change, f, text, sign, lineno)))
        elif re.match(r"^(import|export)\b", line, re.IGNORECASE) and (in_bgp or unknown):
            direction = line.split()[0].lower()
            where = f" in {in_bgp}" if in_bgp else ""
            out.append(_finding("bgp_filter", f"{verb} a BGP {direction} rule{where}", _ev(change, f, text, sign, lineno)))
            if sign == "+" and re.match(r"^export\s+all\s*;", line, re.IGNORECASE) and (in_bgp or unknown):
                out.append(_finding("bgp_export_all", f"exports every route{where}: a route leak to the neighbour",
                                    _ev(change, f, text, sign, lineno)))
        elif line.lower().startswith("filter ") or in_filter:
            name = (in_filter or line).split()[1] if len((in_filter or line).split()) > 1 else "?"
            out.append(_finding("bgp_filter", f"{verb} a line of BGP filter {name}", _ev(change, f, text, sign, lineno)))
    return out


_NGINX_PATH = re.compile(r"nginx", re.IGNORECASE)
_SERVER_BLOCK = re.compile(r"^\s*server\s*\{", re.MULTILINE)
_LISTEN = re.compile(r"^\s*listen\s+([^;]+);", re.IGNORECASE)
_AUTH_DIRECTIVE = re.compile(r"^\s*(auth_basic|auth_request|auth_jwt|auth_basic_user_file)\s+(?!off\s*;)", re.IGNORECASE)
_DENY_ALL = re.compile(r"^\s*deny\s+all\s*;", re.IGNORECASE)
_AUTH_OFF = re.compile(r"^\s*(auth_basic\s+off|auth_request\s+off|satisfy\s+any|allow\s+all)\s*;", re.IGNORECASE)
_TLS_DIRECTIVE = re.compile(r"^\s*(ssl_certificate\s|listen\s+[^;]*\bssl\b|return\s+30[178]\s+https://|"
                            r"add_header\s+Strict-Transport-Security)", re.IGNORECASE)
_TLS_OFF = re.compile(r"^\s*(ssl\s+off|proxy_ssl_verify\s+off)\s*;", re.IGNORECASE)


def _is_nginx(f):
    return bool(_NGINX_PATH.search(f.path)) or bool(_SERVER_BLOCK.search(f.before) or _SERVER_BLOCK.search(f.after))


def _wildcard_listen(spec):
    first = spec.split()[0] if spec.split() else ""
    if first.startswith("unix:"):
        return False
    if re.fullmatch(r"\d+", first):
        return True  # a bare port listens on every IPv4 address
    return bool(re.match(r"^(\*|0\.0\.0\.0|\[::\])(:\d+)?$", first))


def _live(lines):
    return any(_LISTEN.match(_strip_comment(line)) for line in lines)


def _count(pattern, lines):
    return sum(1 for line in lines if pattern.match(_strip_comment(line)))


def analyse_nginx(change, f):
    if not _is_nginx(f):
        return []
    out = []
    for lineno, text, _ctx in f.added:
        m = _LISTEN.match(_strip_comment(text))
        if m and _wildcard_listen(m.group(1)):
            out.append(_finding("public_bind", f"nginx listens on all addresses ({m.group(1).strip()})",
                                _ev(change, f, text, "+", lineno)))
        if _AUTH_OFF.match(_strip_comment(text)):
            out.append(_finding("auth_removed", "turns access control off", _ev(change, f, text, "+", lineno)))
        if _TLS_OFF.match(_strip_comment(text)):
            out.append(_finding("tls_removed", "turns TLS (verification) off", _ev(change, f, text, "+", lineno)))
    if not _live(f.after_lines):
        return out  # the site is gone (or not serving): removing its auth/TLS exposes nothing
    for rule, pattern, what in (("auth_removed", _AUTH_DIRECTIVE, "authentication"), ("auth_removed", _DENY_ALL, "a deny-all rule"),
                                ("tls_removed", _TLS_DIRECTIVE, "TLS")):
        lost = _count(pattern, f.before_lines) - _count(pattern, f.after_lines)
        if lost > 0:
            removed = [(n, t) for n, t, _c in f.removed if pattern.match(_strip_comment(t))]
            n, t = removed[0] if removed else (None, None)
            out.append(_finding(rule, f"removes {what} from a site that stays live ({lost} directive(s) fewer)",
                                _ev(change, f, t, "-" if t is not None else None, n)))
    return out


_SSL_SETTING = re.compile(r"^\s*(ssl_protocols|ssl_ciphers|ssl_ecdh_curve|ssl_session_tickets)\s+([^;]+);", re.IGNORECASE)
_SSHD_SETTING = re.compile(r"^\s*(KexAlgorithms|Ciphers|MACs|HostKeyAlgorithms|HostKey)\s+(\S+)\s*$", re.IGNORECASE)
_TLS_STRONG = _nginx_model.TLS_PROFILES["intermediate"]  # modern's lists are subsets of intermediate's


def _tls_weakening(name, value):
    name = name.lower()
    if name == "ssl_protocols":
        return [p for p in value.split() if p not in _TLS_STRONG["protocols"]]
    if name == "ssl_ciphers":
        return [c for c in value.split(":") if c and c not in _TLS_STRONG["ciphers"]]
    if name == "ssl_ecdh_curve":
        return [c for c in value.split(":") if c and c not in _TLS_STRONG["curves"]]
    return ["session tickets"] if value.strip().lower() == "on" else []


def analyse_crypto(change, f):
    """Added nginx TLS or sshd algorithm settings beyond Mozilla's intermediate profile / the SSH policy."""
    out = []
    nginx = _is_nginx(f)
    for lineno, text, _ctx in f.added:
        line = _strip_comment(text)
        m = _SSL_SETTING.match(line) if nginx else None
        if m:
            weak = _tls_weakening(m.group(1), m.group(2))
            if weak:
                out.append(_finding("crypto_weakened", f"TLS below Mozilla's intermediate profile: {m.group(1)} allows "
                                                       f"{', '.join(weak)}", _ev(change, f, text, "+", lineno, weak=weak)))
            continue
        m = _SSHD_SETTING.match(line)
        if m:
            weak = _ssh_policy.weakening(m.group(1), m.group(2))
            if weak:
                out.append(_finding("crypto_weakened", f"SSH beyond the algorithm policy: {m.group(1)} allows {', '.join(weak)}",
                                    _ev(change, f, text, "+", lineno, weak=weak)))
    return out


_ANY_ADDR = re.compile(r"(?<![\d.])0\.0\.0\.0(?![\d./])|\[::\](?::\d+)?|(?<![\w:])::(?=[\s\"':]|$)")
_BIND_WORDS = re.compile(r"listen|bind|host|addr|address|expose|publish|-l\b", re.IGNORECASE)


def analyse_public_bind(change, f, nginx_lines):
    """0.0.0.0 / [::] binds outside nginx's own listen directives (Ollama, daemons, env files)."""
    out = []
    for lineno, text, _ctx in f.added:
        if lineno in nginx_lines:
            continue
        line = _strip_comment(text)
        if _ANY_ADDR.search(line) and (_BIND_WORDS.search(line) or "0.0.0.0:" in line):
            out.append(_finding("public_bind", "binds a service to all addresses", _ev(change, f, text, "+", lineno)))
    return out


def _walk_strings(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk_strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_strings(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


_CONTENT_ARGS = {"content", "src", "dest", "path", "backup", "template", "msg"}


def analyse_args_bind(change):
    out = []
    for path, value in _walk_strings(change["args"]):
        if path.split(".", 1)[0].split("[", 1)[0] in _CONTENT_ARGS:
            continue
        key = re.split(r"[.\[]", path)[-1] if path else ""
        if _ANY_ADDR.search(value) and (_BIND_WORDS.search(key) or _BIND_WORDS.search(value) or "0.0.0.0:" in value):
            out.append(_finding("public_bind", f"argument {path} binds to all addresses",
                                _ev(change, argument=path, value=mask_secrets(value)[:MAX_EVIDENCE])))
    return out


def _mode_private(args):
    """True when the written file's mode keeps it from group and others, False/None otherwise."""
    mode = args.get("mode")
    if mode is None:
        return None
    try:
        value = int(str(mode), 8) if isinstance(mode, str) else int(mode)
    except ValueError:
        return None  # symbolic modes (u=rw,g=r ...): not worth guessing, the line is flagged
    return value & 0o077 == 0


def analyse_secrets(change, f):
    if _mode_private(change["args"]):
        return []
    out = []
    for lineno, text, _ctx in f.added:
        what = secret_in(text)
        if what:
            mode = change["args"].get("mode")
            where = f"mode {mode}" if mode is not None else "no mode given"
            out.append(_finding("plaintext_secret", f"writes {what} in plain text ({where})", _ev(change, f, text, "+", lineno)))
    return out


_K3S_PATH = re.compile(r"^/(etc|var/lib)/rancher/k3s/|k3s\.service|/usr/local/bin/k3s$")


def analyse_k3s(change, settings):
    groups = set(change["groups"]) & set(settings.get("k3s_server_groups", ()))
    if groups:
        return [_finding("k3s_server", f"changes K3s server {change['host']} (group {', '.join(sorted(groups))})",
                         _ev(change, groups=sorted(groups)))]
    service = str(change["args"].get("name") or change["args"].get("service") or "")
    if (_short_action(change["action"]) in ("systemd", "systemd_service", "service", "k3s_service")
            and service in ("k3s", "k3s.service")):
        return [_finding("k3s_server", f"{change['args'].get('state') or 'changes'} the K3s server service",
                         _ev(change, service=service))]
    for f in change["files"]:
        if _K3S_PATH.search(f.path) and "agent" not in f.path:
            return [_finding("k3s_server", f"changes K3s server file {f.path}", _ev(change, f))]
    return []


def analyse_unpredictable(change):
    if change["status"] == "failed":
        return [_finding("check_failed", f"the check run failed here: {change['msg'][:MAX_EVIDENCE] or 'no message'}",
                         _ev(change))]
    if change["status"] == "unpredictable":
        return [_finding("unpredictable", f"cannot predict this change in check mode: {change['msg'][:MAX_EVIDENCE]}",
                         _ev(change))]
    if change["censored"]:
        return [_finding("unpredictable", "no_log hides this change from review", _ev(change))]
    return []


def analyse_changes(changes, settings):
    """Findings (without risk) for normalised ``changes``; ``settings`` is the policy's ``analysers``."""
    findings = []
    for change in changes:
        change = dict(change)
        change["files"] = [FileChange(f.get("path"), f.get("before"), f.get("after")) for f in change["files"]]
        findings.extend(analyse_unpredictable(change))
        findings.extend(analyse_vm(change, settings))
        findings.extend(analyse_backup_job(change))
        findings.extend(analyse_k3s(change, settings))
        findings.extend(analyse_args_bind(change))
        for f in change["files"]:
            nginx = analyse_nginx(change, f)
            findings.extend(nginx)
            findings.extend(analyse_crypto(change, f))
            findings.extend(analyse_bird(change, f))
            nginx_lines = {n for n, t, _c in f.added if _is_nginx(f) and _LISTEN.match(_strip_comment(t))}
            findings.extend(analyse_public_bind(change, f, nginx_lines))
            findings.extend(analyse_secrets(change, f))
    return _dedupe(findings)


def _dedupe(findings):
    seen, out = set(), []
    for f in findings:
        key = json.dumps([f["rule"], f["message"], f["evidence"]], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


# ------------------------------------------------------------------ resources ----------------
def _metric_values(name, facts):
    """``[(metric, percent)]`` from one node's facts; ``ValueError`` if none is recognisable."""
    if not isinstance(facts, dict):
        raise ValueError(f"resources.{name} must be a mapping of usage facts, got {type(facts).__name__}")
    out, seen_metric = [], False
    for key, value in facts.items():
        if isinstance(value, dict) and key == "storage":
            for sid, st in value.items():
                for metric, pct in _metric_values(f"{name}.storage.{sid}", st):
                    out.append((f"storage:{sid}" if metric in ("ratio", "percent", "usage") else f"storage:{sid}:{metric}", pct))
                seen_metric = True
            continue
        if isinstance(value, dict) and "used" in value and "total" in value:
            seen_metric = True
            if value["total"]:
                out.append((key, 100.0 * float(value["used"]) / float(value["total"])))
            continue
        for suffix, scale in (("_ratio", 100.0), ("ratio", 100.0), ("_percent", 1.0), ("percent", 1.0), ("_pct", 1.0)):
            if key.endswith(suffix) and key != "max_ratio":
                seen_metric = True
                if value is None:
                    break
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"resources.{name}.{key} must be a number, got {value!r}")
                metric = key[: -len(suffix)].rstrip("_") or key
                out.append((metric, float(value) * scale))
                break
    if not seen_metric and "used" in facts and "total" in facts:
        seen_metric = True
        if facts["total"]:
            out.append(("usage", 100.0 * float(facts["used"]) / float(facts["total"])))
    if not seen_metric:
        raise ValueError(
            f"resources.{name}: no usage metric found (give keys ending in _ratio (0..1) or _percent (0..100), "
            "or {used, total})"
        )
    return out


def analyse_resources(resources, halt_pct, warn_pct):
    """Findings for resources at/past the thresholds. ``resources``: ``{name: facts}`` or a list of them."""
    if not resources:
        return []
    if isinstance(resources, list):
        items = []
        for n, r in enumerate(resources):
            if not isinstance(r, dict):
                raise ValueError(f"resources[{n}] must be a mapping")
            items.append((str(r.get("node") or r.get("name") or n), r))
    elif isinstance(resources, dict):
        items = list(resources.items())
    else:
        raise ValueError(f"resources must be a mapping of name -> usage facts, got {type(resources).__name__}")
    out = []
    for name, facts in items:
        for metric, pct in _metric_values(name, facts):
            pct = round(pct, 2)
            ev = {"resource": str(name), "metric": metric, "percent": pct}
            if pct >= halt_pct:
                out.append(_finding("resource_exhausted", f"{name} {metric} at {pct}% (halt threshold {halt_pct:g}%)", ev))
            elif pct >= warn_pct:
                out.append(_finding("resource_pressure", f"{name} {metric} at {pct}% (warning threshold {warn_pct:g}%)", ev))
    return out


# ------------------------------------------------------------------ summary for reviewers ----
def summarise(changes, limit=6000):
    """The changes as compact text for AI reviewers: one heading per task and host, unified
    diffs with two lines of context, secrets masked, cut at ``limit`` characters."""
    out = []
    for c in changes:
        out.append(f"## {c['host'] or '?'}: {c['task'] or '(planned change)'} [{c['action'] or '?'}] {c['status']}")
        small = {k: v for k, v in c["args"].items() if k not in _CONTENT_ARGS and not isinstance(v, (dict, list))}
        small.update({k: c["args"][k] for k in ("dest", "path", "name", "state") if k in c["args"]})
        if small:
            out.append("args: " + ", ".join(f"{k}={v}" for k, v in sorted(small.items(), key=lambda kv: str(kv[0]))))
        if c["msg"]:
            out.append(f"msg: {c['msg']}")
        for f in c["files"]:
            diff = difflib.unified_diff((f.get("before") or "").splitlines(), (f.get("after") or "").splitlines(),
                                        f"a {f.get('path') or ''}", f"b {f.get('path') or ''}", n=2, lineterm="")
            out.extend(diff)
    text = mask_secrets("\n".join(out))
    if len(text) > limit:
        text = f"{text[:limit]}\n... [{len(text) - limit} more characters not shown]"
    return text
