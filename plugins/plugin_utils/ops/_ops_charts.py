# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Static SVG charts of the operations reports, drawn by pygal.

Private API of the collection (may change without notice). Controller-only. Every chart is
a self-contained ``<svg>`` element: pygal's tooltip script (fetched from the network by
default) is left out, so a report opens offline and its page makes no requests.
"""

from __future__ import annotations

import re

try:
    import pygal
    from pygal.style import Style
except ImportError:  # pragma: no cover - a dependency of the collection (pyproject.toml)
    pygal = None

_ID = "__locus_chart_id__"
COLOURS = ("#2b6cb0", "#2f855a", "#b7791f", "#c53030", "#6b46c1", "#718096")
OUTCOME_COLOURS = {"ok": "#2f855a", "changed": "#b7791f", "failed": "#c53030", "unreachable": "#6b46c1", "skipped": "#a0aec0"}


class ChartError(Exception):
    """pygal is missing; the message says how to get it."""


def _style(colours=COLOURS):
    return Style(background="white", plot_background="white", foreground="#1a202c", foreground_strong="#1a202c",
                 foreground_subtle="#718096", colors=tuple(colours), font_family="DejaVu Sans, Arial, sans-serif",
                 title_font_size=16, label_font_size=12, major_label_font_size=12, legend_font_size=12)


def _config(colours=COLOURS, line=None, **extra):
    """Common settings; ``line`` marks a major guide line (the halt threshold) red and dashed."""
    if pygal is None:
        raise ChartError("the Python package pygal is needed for report charts (pip install pygal; it is in locus.infra's requirements)")
    css = ["file://style.css", "file://graph.css"]
    if line is not None:
        # pygal does not template inline CSS: _render() scopes it to this chart's id.
        css.append(f"inline:{_ID} .axis .major.guide.line {{stroke: #c53030 !important; "
                   "stroke-width: 2px !important; stroke-dasharray: 6,4 !important; opacity: 1 !important}")
    return dict(js=[], css=css, disable_xml_declaration=True, style=_style(colours), height=380, width=800,
                legend_at_bottom=True, legend_at_bottom_columns=4, print_values=False, truncate_label=-1,
                x_label_rotation=0, margin=20, **extra)


def _render(chart):
    svg = chart.render(is_unicode=True)
    m = re.search(r'id="(chart-[0-9a-f-]+)"', svg)
    return svg.replace(_ID, f"#{m.group(1)}") if m else svg


def usage(nodes, halt_percent):
    """CPU, memory and disk per node in percent, with the halt threshold as a red dashed line.

    ``nodes``: ``[{name, cpu, memory, disk}]`` (percent or None).
    """
    ticks = sorted({0, 20, 40, 60, 80, 100, round(halt_percent)})
    chart = pygal.Bar(**_config(line=halt_percent, range=(0, 100), y_labels=ticks, y_labels_major=[round(halt_percent)],
                                show_minor_y_labels=True, title=f"Node usage, % (dashed red line: halt at {halt_percent:g} %)"))
    chart.x_labels = [n["name"] for n in nodes]
    for key, label in (("cpu", "CPU"), ("memory", "memory"), ("disk", "disk")):
        chart.add(label, [n.get(key) for n in nodes])
    return _render(chart)


def audit_activity(tasks_per_day):
    """Task records per day, stacked by outcome (``[{day, ok, changed, failed, unreachable, skipped}]``)."""
    outcomes = [o for o in OUTCOME_COLOURS if any(d.get(o) for d in tasks_per_day)] or ["ok"]
    chart = pygal.StackedBar(**_config(colours=[OUTCOME_COLOURS[o] for o in outcomes], title="Audit trail: task records per day by outcome"))
    chart.x_labels = [d["day"][5:] for d in tasks_per_day]
    for o in outcomes:
        chart.add(o, [d.get(o, 0) for d in tasks_per_day])
    return _render(chart)


def spend(spend_facts):
    """Agent spend today against the budgets, in USD: all agents and each agent."""
    names = ["all agents"] + [a["agent"] for a in spend_facts["agents"]]
    chart = pygal.Bar(**_config(colours=("#2b6cb0", "#cbd5e0"), title=f"Agent spend on {spend_facts['day']} (UTC) against the budgets, USD",
                                value_formatter=lambda v: f"{v:.4f}"))
    chart.x_labels = names
    chart.add("spent", [spend_facts["today_usd"]] + [a["usd"] for a in spend_facts["agents"]])
    chart.add("budget", [spend_facts["daily_budget_usd"]] + [a["budget_usd"] for a in spend_facts["agents"]])
    return _render(chart)


def _against_limit(rows, key, limit, title):
    """One horizontal bar per row (``name``, ``key``) with ``limit`` as a red dashed line."""
    values = [r[key] for r in rows]
    top = max([limit * 2] + values)
    chart = pygal.HorizontalBar(**_config(line=limit, range=(min([0] + values), top), y_labels_major=[limit], title=title))
    chart.y_labels = sorted({0, limit, top})
    for r in rows:
        chart.add(r["name"], [r[key]])
    return _render(chart)


def cert_days(sites, warn_days):
    """Days until each site's certificate expires, the warning limit as a red dashed line."""
    rows = [s for s in sites if s.get("days_left") is not None]
    return _against_limit(rows, "days_left", warn_days, f"Certificate days left (dashed red line: {warn_days} days)")


def backup_age(vms, max_age_hours):
    """Hours since each VM's newest backup (``[{name, age_hours}]``), the limit as a red dashed line."""
    return _against_limit(vms, "age_hours", max_age_hours, f"Age of the newest backup, hours (dashed red line: {max_age_hours:g} h)")
