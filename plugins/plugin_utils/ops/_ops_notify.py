# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The heartbeat's record and its webhook: one NOTIFY record per run, a message on state change.

Private API of the collection (may change without notice). Controller-only.

State lives in the audit trail itself: each heartbeat run appends one NOTIFY record with its
``state`` (up/down) and ``notified`` - the last state a webhook delivered. A run sends when
its state differs from ``notified`` (went down, recovered), so a failed delivery is tried
again by the next run and a steady state never repeats a message. Reading the last record,
sending and appending happen in one write transaction: two heartbeats at once send once.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse

from ansible.module_utils import urls

from ansible_collections.locus.infra.plugins.plugin_utils import _redact
from ansible_collections.locus.infra.plugins.plugin_utils.ops import _ops_health

MAX_LISTED = 15


class NotifyError(Exception):
    """Bad webhook settings: the message names the option (never its secret value)."""


def endpoint(url):
    """``scheme://host[:port]`` of ``url``: what may be recorded (the path and query can be the secret)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotifyError("webhook_url must be an http:// or https:// URL (value not shown: it may hold a secret)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def previous(tx, name):
    """The data of this heartbeat's last NOTIFY record, or None."""
    rows = tx.find(action="NOTIFY", fields={"heartbeat": name}, limit=1)
    if not rows:
        return None
    try:
        data = json.loads(rows[0]["data"])
    except ValueError:
        return None
    return dict(data, tag=rows[0]["tag"]) if isinstance(data, dict) else None


def payload(name, summary, previous_state, job, topic):
    """One JSON body that ntfy (JSON publishing: topic/title/message/priority/tags) and Slack
    incoming webhooks (``text``) both accept; each ignores the other's keys."""
    state = summary["state"]
    if state == "down":
        title = f"locus {name}: DOWN ({summary['counts']['down']} of {summary['counts']['checks']} checks)"
        lines = summary["down"][:MAX_LISTED] + ([f"... and {len(summary['down']) - MAX_LISTED} more"] if len(summary["down"]) > MAX_LISTED else [])
        tags, priority = ["rotating_light"], 5
    else:
        title = f"locus {name}: recovered, all {summary['counts']['checks']} checks up"
        lines = [f"was {previous_state}"] if previous_state else []
        tags, priority = ["white_check_mark"], 3
    message = "\n".join(lines + [f"run {job}"])
    message = _ops_health.clean(message, 3000)
    return {"topic": topic, "title": title, "message": message, "priority": priority, "tags": tags,
            "text": f"*{title}*\n{message}", "locus": {"heartbeat": name, "state": state, "previous": previous_state, "job": job}}


def send(url, body, token=None, timeout=10):
    """POST ``body`` as JSON; ``{sent, status, error}`` - never raises for network trouble, never echoes the URL."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        resp = urls.open_url(url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST", timeout=timeout,
                             http_agent="locus.infra-heartbeat", follow_redirects="none")
        return {"sent": 200 <= resp.status < 300, "status": resp.status, "error": None}
    except urllib.error.HTTPError as exc:
        return {"sent": False, "status": exc.code, "error": f"HTTP {exc.code} {exc.reason}"}
    except (urllib.error.URLError, OSError, ValueError, urls.ConnectionError, urls.SSLValidationError) as exc:
        reason = getattr(exc, "reason", exc)
        return {"sent": False, "status": None, "error": f"{type(exc).__name__}: {reason}"}


def heartbeat(store, name, summary, checks, job, webhook=None, check_mode=False):
    """Record this run's NOTIFY (one per run) and send the webhook on a state change.

    ``webhook``: ``{url, token, topic, timeout}`` or None. Returns ``{ref_tag, state, previous,
    state_changed, notification}``.
    """
    if webhook:
        endpoint(webhook["url"])  # fail on a bad URL before anything is written

    def work(tx):
        prev = previous(tx, name)
        prev_state = prev.get("state") if prev else None
        notified = prev.get("notified") if prev else None
        # First run: "up" is what nobody needs telling; "down" is news.
        wanted = summary["state"] != (notified or "up")
        note = {"wanted": wanted, "sent": False}
        new_notified = notified or "up"
        if webhook and wanted and not check_mode:
            note.update(endpoint=endpoint(webhook["url"]),
                        **send(webhook["url"], payload(name, summary, notified, job, webhook.get("topic") or "locus"),
                               webhook.get("token"), webhook.get("timeout") or 10))
            if note["sent"]:
                new_notified = summary["state"]
        elif not webhook:
            new_notified = summary["state"]  # nothing to deliver: the state is as known as it gets
        data = {"heartbeat": name, "state": summary["state"], "previous": prev_state, "notified": new_notified,
                "state_changed": prev_state is not None and prev_state != summary["state"], "counts": summary["counts"],
                "down": summary["down"][:50], "warn": summary["warn"][:50], "job": job, "webhook": note,
                "checks": [{k: c[k] for k in ("check", "host", "state")} for c in checks if c["state"] != "up"][:100]}
        if check_mode:
            return None, data, prev_state
        subject = f"{name}: {summary['state'].upper()} ({summary['counts']['down']} down, {summary['counts']['warn']} warn of {summary['counts']['checks']})"
        return tx.record("NOTIFY", subject, _redact.redact(data)), data, prev_state

    with store.transaction() as tx:
        tag, data, prev_state = work(tx)
    return {"ref_tag": tag, "state": summary["state"], "previous": prev_state, "state_changed": data["state_changed"],
            "notification": data["webhook"], "down": summary["down"], "warn": summary["warn"], "counts": summary["counts"]}
