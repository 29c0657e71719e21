# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The data model of locus.infra.bird2: check the host's ``bgp`` data and fill in every default.

Private API of the collection (may change without notice). Runs on the controller (the
``locus.infra.bird2_problems`` and ``locus.infra.bird2_model`` filters); standard library only.

:func:`problems` lists every problem as ``"<key>: <reason>"`` (all of them, not only the
first; a password is never shown); :func:`normalise` returns the data with every default
filled in, as the role's templates render it. The role joins the problems into its message
``locus.infra.bird2: <host>: N problem(s) in the BGP data, nothing was changed: ...``.
"""

from __future__ import annotations

import ipaddress
import json
import re

BGP_KEYS = ("router_id", "local_as", "prefixes", "neighbors", "import", "export", "filters")
NEIGHBOR_KEYS = ("name", "address", "remote_as", "description", "enabled", "password", "multihop", "source_address",
                 "import", "export")
FAMILIES = ("ipv4", "ipv6")
CONFIRM_MODES = ("established", "all", "none")
DEFAULT_RULES = {"import": {"ipv4": "all", "ipv6": "all"}, "export": {"ipv4": "own", "ipv6": "own"}}

# A BIRD symbol (protocol and filter names); the role's own objects start with locus_.
SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# A BIRD prefix pattern: NET/LEN, optionally followed by +, - or {MIN,MAX}.
PATTERN = re.compile(r"^[0-9A-Fa-f:.]+/[0-9]{1,3}(\+|-|\{[0-9]{1,3},[0-9]{1,3}\})?$")
_PATTERN_SUFFIX = re.compile(r"(\+|-|\{[0-9]+,[0-9]+\})$")
# What BIRD cannot take inside a quoted string (descriptions, passwords).
_UNQUOTABLE = re.compile(r'["\\\n\r]')
_NUMBER = re.compile(r"^[0-9]{1,10}$")
_MISSING = object()


class ModelError(ValueError):
    """All problems of one host's data."""

    def __init__(self, problems):
        super().__init__("; ".join(problems))
        self.problems = problems


def show(value):
    """A value as the messages quote it (JSON)."""
    return json.dumps(value, default=str)


def _is_mapping(v):
    return isinstance(v, dict)


def _is_list(v):
    return isinstance(v, (list, tuple))


def _is_number(v):
    """An integer, or a string of 1-10 digits (how Jinja's templates pass numbers)."""
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and bool(_NUMBER.match(v)))


def _is_as(v):
    return _is_number(v) and 1 <= int(v) <= 4294967294 and int(v) != 23456


def family_of(value):
    """``ipv4``/``ipv6`` for an address (a string without a prefix length), else None."""
    if not isinstance(value, str) or "/" in value:
        return None
    try:
        return f"ipv{ipaddress.ip_address(value).version}"
    except ValueError:
        return None


def net_family(value):
    """``ipv4``/``ipv6`` for a network NET/LEN with the host bits zero, else None."""
    if not isinstance(value, str) or "/" not in value:
        return None
    try:
        return f"ipv{ipaddress.ip_network(value, strict=True).version}"
    except ValueError:
        return None


def _family_name(family):
    return family.replace("ipv", "IPv")


def _quotable(value, longest=None):
    if not isinstance(value, str) or _UNQUOTABLE.search(value):
        return False
    return longest is None or 1 <= len(value) <= longest


def _repeated(values):
    """Values that occur more than once, in the order of their first occurrence."""
    seen, out = set(), []
    for v in values:
        if v not in seen and values.count(v) > 1:
            out.append(v)
        seen.add(v)
    return out


class _Problems(list):
    def add(self, key, reason):
        self.append(f"{key}: {reason}")


def _check_rule(p, key, rule, family, direction, filters):
    """An import/export rule: all | none | own (export only) | a filter name | a list of prefix patterns."""
    own = ", own" if direction == "export" else ""
    if isinstance(rule, str):
        if rule in ("all", "none") or (rule == "own" and direction == "export"):
            return
        if rule == "own":
            p.add(key, "'own' (this router's prefixes) is an export rule; imports take all, none, a filter name or a list of prefixes")
        elif rule not in filters:
            known = ", ".join(sorted(str(f) for f in filters)) or "none defined"
            p.add(key, f"{show(rule)} is neither all, none{own} nor a filter of bgp.filters ({known})")
    elif _is_list(rule):
        if not rule:
            p.add(key, "an empty prefix list would match nothing - say none")
        for n, item in enumerate(rule):
            where = f"{key}[{n}]"
            if not (isinstance(item, str) and PATTERN.match(item)):
                p.add(where, f"{show(item)} is not a prefix pattern (NET/LEN, optionally followed by +, - or {{MIN,MAX}})")
                continue
            found = net_family(_PATTERN_SUFFIX.sub("", item))
            if not found:
                p.add(where, f"{show(item)} is not a network (NET/LEN with the host bits zero)")
            elif found != family:
                p.add(where, f"{show(item)} is {_family_name(found)}, the rule is for {_family_name(family)} routes")
    else:
        p.add(key, f"{show(rule)} is not a rule (all, none{own}, a filter name or a list of prefixes)")


def _check_top(p, bgp):
    for key in bgp:
        if key not in BGP_KEYS:
            p.add(f"bgp.{key}", f"unknown key (known: {', '.join(BGP_KEYS)})")
    if "router_id" not in bgp:
        p.add("bgp.router_id", "missing (an IPv4 address, usually one of the router's own)")
    elif family_of(bgp["router_id"]) != "ipv4":
        p.add("bgp.router_id", f"{show(bgp['router_id'])} is not an IPv4 address")
    if "local_as" not in bgp:
        p.add("bgp.local_as", "missing (the AS number of this router)")
    elif not _is_as(bgp["local_as"]):
        p.add("bgp.local_as", f"{show(bgp['local_as'])} is not an AS number (1-4294967294, not 23456)")


def _check_filters(p, bgp):
    """Checks ``bgp.filters``; returns the usable mapping (empty when it is not one)."""
    filters = bgp.get("filters") or {}
    if not _is_mapping(filters):
        p.add("bgp.filters", f"must be a mapping of filter name to BIRD filter code, got {show(filters)}")
        return {}
    for name, body in filters.items():
        if not (isinstance(name, str) and SYMBOL.match(name)) or str(name).startswith("locus_"):
            p.add(f"bgp.filters.{name}",
                  "a filter name must be a BIRD symbol ([A-Za-z_][A-Za-z0-9_]*, at most 64 characters, not starting with locus_)")
        if not (isinstance(body, str) and body.strip()):
            p.add(f"bgp.filters.{name}", f"must be BIRD filter code (a non-empty string), got {show(body)}")
    return filters


def _check_prefixes(p, bgp):
    prefixes = bgp.get("prefixes") or {}
    if not _is_mapping(prefixes):
        p.add("bgp.prefixes", f"must be a mapping with ipv4 and/or ipv6 lists, got {show(prefixes)}")
        return
    for key in prefixes:
        if key not in FAMILIES:
            p.add(f"bgp.prefixes.{key}", "unknown address family (ipv4, ipv6)")
    for family in FAMILIES:
        nets = prefixes.get(family) or []
        if not _is_list(nets):
            p.add(f"bgp.prefixes.{family}", f"must be a list of networks, got {show(nets)}")
            continue
        for n, net in enumerate(nets):
            found = net_family(net)
            if not found:
                p.add(f"bgp.prefixes.{family}[{n}]", f"{show(net)} is not a network (NET/LEN with the host bits zero)")
            elif found != family:
                p.add(f"bgp.prefixes.{family}[{n}]", f"{show(net)} is {_family_name(found)} - list it under bgp.prefixes.{found}")
        for net in _repeated([str(x) for x in nets]):
            p.add(f"bgp.prefixes.{family}", f"{net} is listed more than once")


def _check_default_rules(p, bgp, filters):
    for direction in ("import", "export"):
        rules = bgp.get(direction) or {}
        if not _is_mapping(rules):
            p.add(f"bgp.{direction}", f"must be a mapping of address family (ipv4, ipv6) to a rule, got {show(rules)}")
            continue
        for family, rule in rules.items():
            if family not in FAMILIES:
                p.add(f"bgp.{direction}.{family}", "unknown address family (ipv4, ipv6)")
            else:
                _check_rule(p, f"bgp.{direction}.{family}", rule, family, direction, filters)


def _check_neighbor(p, key, n, filters):
    for k in n:
        if k not in NEIGHBOR_KEYS:
            p.add(f"{key}.{k}", f"unknown key (known: {', '.join(NEIGHBOR_KEYS)})")
    if "name" not in n:
        p.add(f"{key}.name", "missing (the BIRD protocol name of the session)")
    elif not (isinstance(n["name"], str) and SYMBOL.match(n["name"])) or str(n["name"]).startswith("locus_"):
        p.add(f"{key}.name",
              f"{show(n['name'])} is not a BIRD symbol ([A-Za-z_][A-Za-z0-9_]*, at most 64 characters, not starting with locus_)")
    family = family_of(n["address"]) if "address" in n else None
    if "address" not in n:
        p.add(f"{key}.address", "missing (the neighbour's IPv4 or IPv6 address)")
    elif not family:
        p.add(f"{key}.address", f"{show(n['address'])} is not an IP address")
    if "remote_as" not in n:
        p.add(f"{key}.remote_as", "missing (the neighbour's AS number)")
    elif not _is_as(n["remote_as"]):
        p.add(f"{key}.remote_as", f"{show(n['remote_as'])} is not an AS number (1-4294967294, not 23456)")
    if "description" in n and not _quotable(n["description"]):
        p.add(f"{key}.description", "must be a string without double quotes, backslashes or line breaks")
    if "enabled" in n and not isinstance(n["enabled"], bool):
        p.add(f"{key}.enabled", f"must be true or false, got {show(n['enabled'])}")
    if n.get("password") is not None and not _quotable(n["password"], 80):
        p.add(f"{key}.password", "must be 1-80 characters without double quotes, backslashes or line breaks (TCP-MD5 key; value not shown)")
    hop = n.get("multihop", _MISSING)
    if hop is not _MISSING and not (isinstance(hop, bool) or (isinstance(hop, int) and 1 <= hop <= 255)):
        p.add(f"{key}.multihop", f"must be true, false (directly connected) or a TTL of 1-255, got {show(hop)}")
    if "source_address" in n and family and family_of(n["source_address"]) != family:
        p.add(f"{key}.source_address", f"{show(n['source_address'])} is not an {_family_name(family)} address like the neighbour's")
    for direction in ("import", "export"):
        if direction in n and family:
            _check_rule(p, f"{key}.{direction}", n[direction], family, direction, filters)


def _check_neighbors(p, bgp, filters):
    neighbors = bgp.get("neighbors") or []
    if not _is_list(neighbors):
        p.add("bgp.neighbors", f"must be a list, got {show(neighbors)}")
        return
    for i, n in enumerate(neighbors):
        named = _is_mapping(n) and isinstance(n.get("name"), str)
        key = f"bgp.neighbors[{i}]" + (f" ({n['name']})" if named else "")
        if not _is_mapping(n):
            p.add(key, f"must be a mapping (name, address, remote_as, ...), got {show(n)}")
        else:
            _check_neighbor(p, key, n, filters)
    mappings = [n for n in neighbors if _is_mapping(n)]
    for name in _repeated([str(n["name"]) for n in mappings if "name" in n]):
        p.add("bgp.neighbors", f"the name {name} is used more than once (it names the BIRD protocol)")
    for address in _repeated([str(n["address"]).lower() for n in mappings if "address" in n]):
        p.add("bgp.neighbors", f"the address {address} is used more than once")


def _neighbor_names(bgp):
    if not _is_mapping(bgp) or not _is_list(bgp.get("neighbors") or []):
        return []
    return [n["name"] for n in bgp.get("neighbors") or [] if _is_mapping(n) and "name" in n]


def _check_settings(p, bgp, settings):
    passwords = settings.get("passwords", {})
    if not _is_mapping(passwords):
        p.append("bird2_passwords: must be a mapping of neighbour name to password")
    else:
        names = _neighbor_names(bgp)
        for name, password in passwords.items():
            if name not in names:
                p.add(f"bird2_passwords.{name}", "no neighbour of that name in bgp.neighbors")
            elif not _quotable(password, 80):
                p.add(f"bird2_passwords.{name}", "must be 1-80 characters without double quotes, backslashes or line breaks (value not shown)")
    confirm = settings.get("confirm_sessions", "established")
    if confirm not in CONFIRM_MODES:
        p.add("bird2_confirm_sessions", f"{show(confirm)} is not one of established, all, none")
    wait, timeout = settings.get("confirm_wait", 60), settings.get("configure_timeout", 180)
    if not _is_number(wait) or not _is_number(timeout):
        p.add("bird2_confirm_wait, bird2_configure_timeout", "must be numbers of seconds")
    elif int(timeout) < int(wait) + 30:
        p.add("bird2_configure_timeout", f"{timeout} s leaves no time to confirm after waiting bird2_confirm_wait ({wait} s) "
              f"for the sessions: give it at least {int(wait) + 30}")


def problems(bgp=_MISSING, settings=None):
    """Every problem in ``bgp`` and the role's settings, as ``"<key>: <reason>"`` strings.

    ``settings`` (from the role's variables): ``passwords`` (bird2_passwords),
    ``confirm_sessions``, ``confirm_wait``, ``configure_timeout``.
    """
    p = _Problems()
    if bgp is _MISSING:
        p.append("bgp: not defined - the role needs the router data (router_id, local_as, prefixes, neighbors)")
    elif not _is_mapping(bgp):
        p.add("bgp", f"must be a mapping, got {show(bgp)}")
    else:
        _check_top(p, bgp)
        filters = _check_filters(p, bgp)
        _check_prefixes(p, bgp)
        _check_default_rules(p, bgp, filters)
        _check_neighbors(p, bgp, filters)
    _check_settings(p, None if bgp is _MISSING else bgp, settings or {})
    return list(p)


def normalise(bgp, settings=None):
    """``bgp`` with every default filled in (raises :class:`ModelError` with all problems).

    No secrets: a neighbour only says whether it has a password (``password_set``).
    """
    found = problems(bgp, settings)
    if found:
        raise ModelError(found)
    passwords = (settings or {}).get("passwords") or {}
    rules = {d: {**DEFAULT_RULES[d], **(bgp.get(d) or {})} for d in ("import", "export")}
    prefixes = bgp.get("prefixes") or {}
    neighbors = []
    for n in bgp.get("neighbors") or []:
        family = family_of(str(n["address"]))
        neighbors.append({
            "name": n["name"],
            "address": str(n["address"]),
            "family": family,
            "remote_as": int(n["remote_as"]),
            "description": n.get("description", ""),
            "enabled": n.get("enabled", True),
            "multihop": n.get("multihop"),
            "source_address": n.get("source_address"),
            "import": n.get("import", rules["import"][family]),
            "export": n.get("export", rules["export"][family]),
            "password_set": n.get("password") is not None or n["name"] in passwords,
        })
    return {
        "router_id": str(bgp["router_id"]),
        "local_as": int(bgp["local_as"]),
        "prefixes": {f: [str(x) for x in prefixes.get(f) or []] for f in FAMILIES},
        "filters": bgp.get("filters") or {},
        "neighbors": neighbors,
    }


def sessions(model):
    """Names of the enabled sessions of a normalised model (those the role waits for)."""
    return [n["name"] for n in model["neighbors"] if n["enabled"]]
