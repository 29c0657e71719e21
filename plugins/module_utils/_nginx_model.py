# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The data model of locus.infra.nginx: check ``nginx_sites`` and fill in every default.

Private API of the collection (may change without notice). Runs on the controller (the
``locus.infra.nginx_sites`` filter); standard library only.

Every problem is reported as one line naming the host, the site, the key and the reason,
for example ``web1: nginx_sites[1] (app.example.org): upstreams[0]: 'app' is not an
address:port (e.g. 127.0.0.1:8080 or [::1]:8080)``; all problems are collected, not only
the first. The templates of the role render the normalised sites as they are.
"""

from __future__ import annotations

import ipaddress
import re

SITE_KEYS = {
    "name", "state", "server_names", "type", "listen", "http_port", "https_port",
    "root", "content", "index",
    "upstreams", "upstream_scheme", "upstream_host", "health", "proxy_read_timeout",
    "tls", "hsts", "headers", "csp", "rate_limit", "gzip", "auth", "extra_directives", "probe",
}
TLS_KEYS = {"mode", "certificate", "private_key", "redirect_http", "profile", "protocols", "ciphers", "curves", "ocsp_stapling",
            "weaken"}
WEAKEN_KEYS = {"reason", "profile", "protocols", "ciphers", "curves"}
TLS_MODES = ("self_signed", "provided", "acme", "none")
HEALTH_KEYS = {"path", "status", "max_fails", "fail_timeout"}
UPSTREAM_KEYS = {"address", "weight", "max_fails", "fail_timeout", "backup"}
AUTH_KEYS = {"realm", "users", "allow_plain_http"}
USER_KEYS = {"name", "password", "password_hash"}
RATE_KEYS = {"zone", "burst", "nodelay"}
PROBE_KEYS = {"path", "status"}
HSTS_KEYS = {"max_age", "include_subdomains", "preload"}
ZONE_KEYS = {"name", "key", "size", "rate"}
ACME_KEYS = {"email", "server", "staging", "key_type", "extra_args", "certbot", "deploy_hook"}

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
SITE_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
SERVER_NAME = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DURATION = re.compile(r"^\d+(ms|s|m|h|d)?$")
SIZE = re.compile(r"^\d+[kKmMgG]?$")
RATE = re.compile(r"^\d+r/[sm]$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
USER_NAME = re.compile(r"^[^:\s]+$")
PATH = re.compile(r"^/[^\s;{}'\"]*$")
REL_FILE = re.compile(r"^(?!/)(?!.*(^|/)\.\.(/|$))[A-Za-z0-9._/-]+$")


# Mozilla's server-side TLS guidelines, version 5.7 (https://ssl-config.mozilla.org/guidelines/5.7.json), the
# version sslyze 6.3 checks with --mozilla_config. nginx settings as Mozilla's generator writes them: the
# TLS 1.3 suites are OpenSSL's defaults (the three of the guideline), so only TLS 1.2 suites are named.
_MOZILLA_CURVES = ("X25519", "prime256v1", "secp384r1")
_MOZILLA_TLS12 = ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                  "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
                  "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305")
TLS_PROFILES = {
    "modern": {"protocols": ("TLSv1.3",), "ciphers": (), "curves": _MOZILLA_CURVES, "dhparam": False,
               "prefer_server_ciphers": False, "certificate_days": 90},
    "intermediate": {"protocols": ("TLSv1.2", "TLSv1.3"), "ciphers": _MOZILLA_TLS12, "curves": _MOZILLA_CURVES,
                     "dhparam": True, "prefer_server_ciphers": False, "certificate_days": 365},
    "old": {"protocols": ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"),
            "ciphers": _MOZILLA_TLS12 + (
                "ECDHE-ECDSA-AES128-SHA256", "ECDHE-RSA-AES128-SHA256", "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA",
                "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES256-SHA384", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA",
                "DHE-RSA-AES128-SHA256", "DHE-RSA-AES256-SHA256", "AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA256",
                "AES256-SHA256", "AES128-SHA", "AES256-SHA", "DES-CBC3-SHA"),
            "curves": _MOZILLA_CURVES, "dhparam": True, "prefer_server_ciphers": True, "certificate_days": 366},
}
# Profiles a site may name without tls.weaken (the old one weakens TLS and must be named there).
TLS_SAFE_PROFILES = ("modern", "intermediate")
TLS_PROTOCOLS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
DHPARAM_FILE = "tls/ffdhe2048.pem"  # RFC 7919 group, as Mozilla's configuration ships it (relative to the tree)
_CIPHER = re.compile(r"^[A-Z0-9][A-Z0-9-]*$")
_CURVE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


class ModelError(ValueError):
    """All problems of one host's data, one per line."""

    def __init__(self, problems):
        super().__init__("\n".join(problems))
        self.problems = problems


def _is_bool(v):
    return isinstance(v, bool)


def _int_in(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def parse_address(text):
    """``'10.0.0.1'``/``'[fd00::1]'``/``'fd00::1'`` -> ipaddress object, or None."""
    t = str(text).strip()
    if t.startswith("[") and t.endswith("]"):
        t = t[1:-1]
    try:
        return ipaddress.ip_address(t)
    except ValueError:
        return None


def listen_form(addr):
    """How nginx writes an address in ``listen`` (IPv6 in brackets)."""
    return f"[{addr.compressed}]" if addr.version == 6 else addr.compressed


def parse_host_port(text):
    """``'127.0.0.1:8080'``, ``'[::1]:8080'``, ``'app.internal:8080'``, ``'unix:/run/app.sock'`` -> normal form or None."""
    t = str(text).strip()
    if t.startswith("unix:/") and " " not in t and ";" not in t:
        return t
    m = re.match(r"^\[([0-9A-Fa-f:.]+)\]:(\d+)$", t) or re.match(r"^([A-Za-z0-9.-]+):(\d+)$", t)
    if not m or not 0 < int(m.group(2)) < 65536:
        return None
    host = m.group(1)
    addr = parse_address(host)
    if addr is not None:
        return f"{listen_form(addr)}:{int(m.group(2))}"
    if re.match(rf"^{_LABEL}(?:\.{_LABEL})*$", host.lower()):
        return f"{host.lower()}:{int(m.group(2))}"
    return None


def site_id(name):
    return "site_" + re.sub(r"[^a-z0-9]", "_", name)


def certbot_argv(site, acme, webroot):
    """The certbot command that issues (or re-issues) the certificate of ``site``.

    ``certonly --webroot``: certbot writes the challenge below ``webroot``, which every TLS
    site serves at ``/.well-known/acme-challenge/`` on its HTTP port; nginx is never stopped
    and certbot never edits nginx's configuration.
    """
    argv = [acme.get("certbot") or "certbot", "certonly", "--webroot", "--webroot-path", webroot,
            "--cert-name", site["name"], "--non-interactive", "--agree-tos", "--keep-until-expiring"]
    for name in site["server_names"]:
        argv += ["--domain", name]
    if acme.get("email"):
        argv += ["--email", acme["email"]]
    else:
        argv.append("--register-unsafely-without-email")
    if acme.get("staging"):
        argv.append("--staging")
    elif acme.get("server"):
        argv += ["--server", acme["server"]]
    if acme.get("key_type"):
        argv += ["--key-type", acme["key_type"]]
    if acme.get("deploy_hook"):
        argv += ["--deploy-hook", acme["deploy_hook"]]
    argv += [str(a) for a in acme.get("extra_args") or []]
    return argv


def _names(chk, where, value, pattern, what):
    """A list of names (or one ``a:b:c`` string) checked against ``pattern``; None when absent or bad."""
    if value is None:
        return None
    items = value.split(":") if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and pattern.match(i) for i in items):
        chk.fail(where, f"must be a non-empty list of {what}, got {value!r}")
        return None
    return list(dict.fromkeys(items))


def tls_profile(chk, where, tls, default="intermediate", self_signed_days=None, tree="locus"):
    """The TLS settings of one site: its Mozilla profile, narrowed by the site or weakened by ``tls.weaken``.

    A site may name ``modern`` or ``intermediate`` (``profile``) and narrow it (``protocols``, ``ciphers``,
    ``curves`` - subsets of the profile). Anything weaker - the ``old`` profile, a protocol, suite or curve the
    profile does not have - is refused unless it stands under ``tls.weaken`` with a ``reason``; such a site is
    marked ``weakened`` (the guard's ``crypto_weakened`` rule flags it too).
    """
    if default not in TLS_SAFE_PROFILES:
        chk.fail("nginx_tls_profile", f"{default!r} must be modern or intermediate (a site that needs the old profile names it "
                                      "under tls.weaken with a reason)")
        default = "intermediate"
    name = tls.get("profile", default)
    weaken = tls.get("weaken")
    if weaken is not None and chk.keys(f"{where}: tls.weaken", weaken, WEAKEN_KEYS):
        reason = weaken.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            chk.fail(where, "tls.weaken.reason: a weakened TLS profile needs a reason (who still needs it, until when)")
        name = weaken.get("profile", name)
        if name not in TLS_PROFILES:
            chk.fail(where, f"tls.weaken.profile: {name!r} must be one of {', '.join(TLS_PROFILES)}")
            name = default
    elif weaken is not None:
        weaken = None
    if name not in TLS_PROFILES:
        chk.fail(where, f"tls.profile: {name!r} must be modern or intermediate")
        name = default
    elif name not in TLS_SAFE_PROFILES and weaken is None:
        chk.fail(where, f"tls.profile: {name!r} weakens TLS below Mozilla's intermediate profile; name it under tls.weaken "
                        "(profile, reason) if a client really needs it")
        name = default
    base = TLS_PROFILES[name]
    wanted = {"protocols": list(base["protocols"]), "ciphers": list(base["ciphers"]), "curves": list(base["curves"])}
    weakened = name not in TLS_SAFE_PROFILES
    for key, pattern, what in (("protocols", re.compile(r"^TLSv1(\.[123])?$"), f"protocols ({', '.join(TLS_PROTOCOLS)})"),
                               ("ciphers", _CIPHER, "OpenSSL cipher suite names"), ("curves", _CURVE, "curve names")):
        narrowed = _names(chk, f"{where}: tls.{key}", tls.get(key), pattern, what)
        if narrowed is not None:
            extra = [x for x in narrowed if x not in base[key]]
            if extra:
                chk.fail(where, f"tls.{key}: {', '.join(extra)} not in the {name} profile - that weakens it; put the "
                                f"{key} under tls.weaken with a reason if a client really needs them")
            else:
                wanted[key] = narrowed
        widened = _names(chk, f"{where}: tls.weaken.{key}", (weaken or {}).get(key), pattern, what)
        if widened is not None:
            wanted[key] = widened
            weakened = weakened or any(x not in TLS_PROFILES["intermediate"][key] for x in widened)
    if "TLSv1.2" in wanted["protocols"] and not wanted["ciphers"]:
        chk.fail(where, "tls: TLS 1.2 needs cipher suites (the modern profile has none: it speaks TLS 1.3 only)")
    days = base["certificate_days"]
    if self_signed_days is not None:
        if not _int_in(self_signed_days, 1, days):
            chk.fail(where, f"nginx_self_signed_days: {self_signed_days!r} - the {name} profile allows certificates of "
                            f"1-{days} days")
        else:
            days = self_signed_days
    legacy = any(p in wanted["protocols"] for p in ("TLSv1", "TLSv1.1"))
    directives = [f"ssl_protocols {' '.join(p for p in TLS_PROTOCOLS if p in wanted['protocols'])};",
                  f"ssl_ecdh_curve {':'.join(wanted['curves'])};"]
    if wanted["ciphers"] and any(p != "TLSv1.3" for p in wanted["protocols"]):
        # OpenSSL 3 refuses SHA-1 signatures for TLS 1.0/1.1 at its default security level.
        directives.append(f"ssl_ciphers {':'.join(wanted['ciphers'])}{':@SECLEVEL=0' if legacy else ''};")
    directives.append(f"ssl_prefer_server_ciphers {'on' if base['prefer_server_ciphers'] else 'off'};")
    dhparam = base["dhparam"] and any(c.startswith("DHE-") for c in wanted["ciphers"])
    if dhparam:
        directives.append(f"ssl_dhparam {tree}/{DHPARAM_FILE};")
    return {"name": name, "weakened": weakened, "reason": (weaken or {}).get("reason") if weakened else None,
            "protocols": wanted["protocols"], "ciphers": wanted["ciphers"], "curves": wanted["curves"],
            "dhparam": dhparam, "certificate_days": days, "directives": directives}


class _Checker:
    def __init__(self, host):
        self.host = host
        self.problems = []

    def fail(self, where, msg):
        self.problems.append(f"{self.host}: {where}: {msg}")

    def keys(self, where, value, known):
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping, got {type(value).__name__}")
            return False
        unknown = sorted(set(value) - known)
        if unknown:
            self.fail(where, f"unknown key(s) {', '.join(map(str, unknown))} (known: {', '.join(sorted(known))})")
        return True


def _status_list(chk, where, value, default):
    if value is None:
        return list(default)
    items = value if isinstance(value, list) else [value]
    if not items or not all(_int_in(s, 100, 599) for s in items):
        chk.fail(where, f"must be an HTTP status or a list of them (100-599), got {value!r}")
        return list(default)
    return items


def normalise_zones(zones, host="localhost"):
    """Check ``nginx_rate_limit_zones``; returns the zones with defaults filled in."""
    chk = _Checker(host)
    out, names = [], set()
    if not isinstance(zones, list):
        raise ModelError([f"{host}: nginx_rate_limit_zones: must be a list, got {type(zones).__name__}"])
    for n, z in enumerate(zones):
        where = f"nginx_rate_limit_zones[{n}]"
        if not chk.keys(where, z, ZONE_KEYS):
            continue
        zone = {"key": "$binary_remote_addr", "size": "10m", "rate": "10r/s", **z}
        if not isinstance(zone.get("name"), str) or not IDENT.match(zone["name"]):
            chk.fail(where, f"name: {zone.get('name')!r} is not a valid zone name (letters, digits, _)")
        elif zone["name"] in names:
            chk.fail(where, f"name: zone {zone['name']!r} is defined twice")
        names.add(zone.get("name"))
        if not isinstance(zone["key"], str) or not re.match(r"^\$[a-z_]+$", zone["key"]):
            chk.fail(where, f"key: {zone['key']!r} is not an nginx variable such as $binary_remote_addr")
        if not isinstance(zone["size"], str) or not SIZE.match(str(zone["size"])):
            chk.fail(where, f"size: {zone['size']!r} is not a size such as 10m")
        if not isinstance(zone["rate"], str) or not RATE.match(zone["rate"]):
            chk.fail(where, f"rate: {zone['rate']!r} is not a rate such as 10r/s or 60r/m")
        out.append(zone)
    if chk.problems:
        raise ModelError(chk.problems)
    return out


def normalise(sites, host="localhost", settings=None):
    """Check ``sites`` (the ``nginx_sites`` list) and return them with every default filled in.

    ``settings`` (from the role's variables): ``listen`` (default addresses), ``host_addresses``
    (the host's own addresses; listen addresses must be among them), ``http_port``,
    ``https_port``, ``www_dir``, ``state_dir``, ``tree``, ``gzip``, ``hsts``, ``headers``
    (default security headers), ``zones`` (normalised rate-limit zones), ``acme`` (certbot
    settings), ``acme_issued`` (names of sites whose ACME certificate exists on the host).
    Raises :class:`ModelError` with every problem found.
    """
    s = dict(settings or {})
    chk = _Checker(host)
    if sites is None:
        sites = []
    if not isinstance(sites, list):
        raise ModelError([f"{host}: nginx_sites: must be a list of sites, got {type(sites).__name__}"])
    st = _Settings(s)
    chk.keys("nginx_acme", st.acme, ACME_KEYS)
    out, names = [], {}

    for n, raw in enumerate(sites):
        label = raw.get("name") if isinstance(raw, dict) and isinstance(raw.get("name"), str) else "(no name)"
        where = f"nginx_sites[{n}] ({label})"
        if not chk.keys(where, raw, SITE_KEYS):
            continue
        name = raw.get("name")
        if not isinstance(name, str) or not SITE_NAME.match(name):
            chk.fail(where, f"name: {name!r} must be a lower-case DNS name (it names the site's files)")
            continue
        if name in names:
            chk.fail(where, f"name: site {name!r} is defined twice (also nginx_sites[{names[name]}])")
            continue
        names[name] = n
        state = raw.get("state", "present")
        if state not in ("present", "absent"):
            chk.fail(where, f"state: {state!r} must be present or absent")
            continue
        site = {"name": name, "state": state, "id": site_id(name), "file": f"{st.tree}/sites/{name}.conf",
                "default_root": f"{st.www_dir}/{name}", "self_signed_dir": f"{st.state_dir}/tls/{name}"}
        if state == "present":
            for section in _SECTIONS:
                section(chk, where, raw, site, st)
        out.append(site)

    _conflicts(chk, [x for x in out if x["state"] == "present"])
    if chk.problems:
        raise ModelError(chk.problems)
    return out


class _Settings:
    """The host-wide settings every site section reads (from the role's variables, see :func:`normalise`)."""

    def __init__(self, given):
        self.given = given  # the raw settings: ports, gzip, hsts, headers, tls_profile, self_signed_days
        self.zones = {z["name"] for z in given.get("zones") or []}
        self.host_addrs = {a for a in (parse_address(x) for x in given.get("host_addresses") or []) if a is not None}
        self.default_listen = given.get("listen") or []
        self.tree = given.get("tree") or "locus"
        self.state_dir = (given.get("state_dir") or "/var/lib/locus-nginx").rstrip("/")
        self.www_dir = (given.get("www_dir") or "/var/www/locus").rstrip("/")
        self.acme = dict(given.get("acme") or {})
        self.acme_issued = set(given.get("acme_issued") or [])


# One validator per section of a present site, in this order (later sections read what earlier ones set in
# ``site``: the type, the TLS settings, the content). Each takes (chk, where, raw, site, settings), reports
# problems with chk.fail(where, ...) and fills its keys of ``site`` with the normalised values.
def _server_names(chk, where, raw, site, st):
    server_names = raw.get("server_names", [site["name"]])
    if not isinstance(server_names, list) or not server_names:
        chk.fail(where, f"server_names: must be a non-empty list of names, got {server_names!r}")
        server_names = [site["name"]]
    for i, sn in enumerate(server_names):
        if not isinstance(sn, str) or not SERVER_NAME.match(sn):
            chk.fail(where, f"server_names[{i}]: {sn!r} is not a lower-case DNS name (or *.name)")
    site["server_names"] = [x for x in server_names if isinstance(x, str)]


def _site_type(chk, where, raw, site, st):
    kind = raw.get("type", "static")
    if kind not in ("static", "proxy"):
        chk.fail(where, f"type: {kind!r} must be static or proxy")
    site["type"] = kind
    static_only = [k for k in ("root", "content", "index") if k in raw]
    proxy_only = [k for k in ("upstreams", "upstream_scheme", "upstream_host", "health", "proxy_read_timeout") if k in raw]
    if kind == "static" and proxy_only:
        chk.fail(where, f"{proxy_only[0]}: only for type proxy (this site is static)")
    if kind == "proxy" and static_only:
        chk.fail(where, f"{static_only[0]}: only for type static (this site is a proxy)")


def _listen(chk, where, raw, site, st):
    listen = raw.get("listen", st.default_listen)
    if isinstance(listen, str):
        listen = [listen]
    addrs = []
    if not isinstance(listen, list) or not listen:
        chk.fail(where, "listen: no address to listen on (give listen, or nginx_listen, or gather facts for the "
                        "host's default address)")
        listen = []
    for i, a in enumerate(listen):
        addr = parse_address(a) if str(a) != "*" else ipaddress.IPv4Address(0)
        if addr is None:
            chk.fail(where, f"listen[{i}]: {a!r} is not an IP address (use 0.0.0.0 or :: to listen on every address)")
            continue
        if not addr.is_unspecified and st.host_addrs and addr not in st.host_addrs:
            chk.fail(where, f"listen[{i}]: {addr.compressed} is not an address of this host "
                            f"(it has {', '.join(sorted(a.compressed for a in st.host_addrs))})")
            continue
        if addr not in addrs:
            addrs.append(addr)
    site["listen"] = [listen_form(a) for a in addrs]
    site["listen_public"] = any(a.is_unspecified for a in addrs)
    probe_addr = next((a for a in addrs if not a.is_unspecified), None)
    if probe_addr is None and st.host_addrs:
        probe_addr = sorted(st.host_addrs, key=lambda a: (a.version, a.packed))[0]
    if probe_addr is None and addrs:
        probe_addr = ipaddress.ip_address("127.0.0.1") if addrs[0].version == 4 else ipaddress.ip_address("::1")
    site["probe_address"] = probe_addr.compressed if probe_addr is not None else None
    for key, default in (("http_port", st.given.get("http_port", 80)), ("https_port", st.given.get("https_port", 443))):
        port = raw.get(key, default)
        if not _int_in(port, 1, 65535):
            chk.fail(where, f"{key}: {port!r} must be a port number (1-65535)")
            port = default
        site[key] = port
    if site["http_port"] == site["https_port"]:
        chk.fail(where, f"https_port: {site['https_port']} is also the http_port")


def _tls(chk, where, raw, site, st):
    tls = raw.get("tls", "self_signed")
    if tls is False or tls is None:
        tls = "none"
    if isinstance(tls, str):
        tls = {"mode": tls}
    if isinstance(tls, dict):
        chk.keys(f"{where}: tls", tls, TLS_KEYS)
        tls = dict(tls)
    else:
        chk.fail(where, f"tls: must be self_signed, acme, none, false or a mapping, got {tls!r}")
        tls = {"mode": "none"}
    mode = tls.get("mode") or ("provided" if "certificate" in tls or "private_key" in tls else "self_signed")
    if mode not in TLS_MODES:
        chk.fail(where, f"tls.mode: {mode!r} must be one of {', '.join(TLS_MODES)}")
        mode = "none"
    redirect = tls.get("redirect_http", True)
    if not _is_bool(redirect):
        chk.fail(where, f"tls.redirect_http: {redirect!r} must be true or false")
        redirect = True
    t = {"mode": mode, "enabled": mode != "none", "redirect_http": bool(redirect) and mode != "none"}
    _tls_certificate(chk, where, tls, site, st, t)
    if t["enabled"]:
        _tls_settings(chk, where, tls, st, t)
    else:
        extra = sorted(k for k in ("profile", "protocols", "ciphers", "curves", "ocsp_stapling", "weaken") if k in tls)
        if extra:
            chk.fail(where, f"tls.{extra[0]}: only for a site with TLS (this site is plain HTTP)")
    site["tls"] = t


def _tls_certificate(chk, where, tls, site, st, t):
    """Where the certificate and key come from: the PEM given, self-signed, or ACME (self-signed until issued)."""
    name, mode = site["name"], t["mode"]
    selfsigned = {"certificate": f"{st.state_dir}/tls/{name}/cert.pem", "private_key": f"{st.state_dir}/tls/{name}/key.pem"}
    if mode == "provided":
        for key in ("certificate", "private_key"):
            val = tls.get(key)
            marker = "CERTIFICATE-----" if key == "certificate" else "PRIVATE KEY-----"
            if not isinstance(val, str) or marker not in val:
                chk.fail(where, f"tls.{key}: must be the PEM text (-----BEGIN ...{marker}) for tls mode provided")
        t["certificate_pem"] = tls.get("certificate") or ""
        t["private_key_pem"] = tls.get("private_key") or ""
        t["certificate"] = f"{st.tree}/tls/{name}.crt"
        t["private_key"] = f"{st.tree}/tls/{name}.key"
    elif mode in ("self_signed", "acme"):
        extra = sorted(k for k in ("certificate", "private_key") if k in tls)
        if extra:
            chk.fail(where, f"tls.{extra[0]}: only for tls mode provided (this site is {mode})")
        t["self_signed"] = True  # acme sites serve a self-signed certificate until theirs is issued
        t.update(selfsigned)
        if mode == "acme":
            t["acme_issued"] = name in st.acme_issued
            t["acme_live"] = f"/etc/letsencrypt/live/{name}"
            if t["acme_issued"]:
                t["certificate"] = f"/etc/letsencrypt/live/{name}/fullchain.pem"
                t["private_key"] = f"/etc/letsencrypt/live/{name}/privkey.pem"
            bad = [x for x in site["server_names"] if x.startswith("*.")]
            if bad:
                chk.fail(where, f"server_names: {bad[0]} - a wildcard name needs a DNS-01 challenge, ACME here uses webroot (HTTP-01)")
            t["certbot"] = certbot_argv(site, st.acme, f"{st.state_dir}/acme")


def _tls_settings(chk, where, tls, st, t):
    """The profile (protocols, suites, curves) and OCSP stapling of a site with TLS."""
    t["profile"] = tls_profile(chk, where, tls, st.given.get("tls_profile") or "intermediate",
                               st.given.get("self_signed_days"), st.tree)
    # OCSP stapling needs a CA's responder: on for provided and issued ACME chains, never for a self-signed one.
    chain = t["mode"] == "provided" or (t["mode"] == "acme" and t.get("acme_issued"))
    stapling = tls.get("ocsp_stapling", bool(chain))
    if not _is_bool(stapling):
        chk.fail(where, f"tls.ocsp_stapling: {stapling!r} must be true or false")
        stapling = bool(chain)
    elif stapling and not chain:
        chk.fail(where, "tls.ocsp_stapling: a self-signed certificate has no OCSP responder to staple from")
        stapling = False
    t["ocsp_stapling"] = stapling


def _hsts(chk, where, raw, site, st):
    hsts = raw.get("hsts", st.given.get("hsts", True))
    if hsts is True:
        hsts = {}
    if hsts is False or not site["tls"]["enabled"]:
        site["hsts"] = None
    elif chk.keys(f"{where}: hsts", hsts, HSTS_KEYS):
        h = {"max_age": 63072000, "include_subdomains": True, "preload": False, **(st.given.get("hsts_defaults") or {}),
             **hsts}
        if not _int_in(h["max_age"], 0, 10 ** 9):
            chk.fail(where, f"hsts.max_age: {h['max_age']!r} must be seconds (an integer)")
        value = f"max-age={h['max_age']}" + ("; includeSubDomains" if h["include_subdomains"] else "") + (
            "; preload" if h["preload"] else "")
        site["hsts"] = value
    else:
        site["hsts"] = None


def _headers(chk, where, raw, site, st):
    headers = {}
    for hname, hval in (st.given.get("headers") or {}).items():
        headers[hname.lower()] = (hname, hval)
    csp = raw.get("csp")
    if csp is not None:
        if not isinstance(csp, str) or '"' in csp or not csp.strip():
            chk.fail(where, f"csp: {csp!r} must be a Content-Security-Policy value without double quotes")
        else:
            headers["content-security-policy"] = ("Content-Security-Policy", csp)
    extra_headers = raw.get("headers", {})
    if not isinstance(extra_headers, dict):
        chk.fail(where, f"headers: must be a mapping of header name to value (null removes a default), got {extra_headers!r}")
        extra_headers = {}
    for hname, hval in extra_headers.items():
        if not isinstance(hname, str) or not HEADER_NAME.match(hname):
            chk.fail(where, f"headers: {hname!r} is not a header name")
            continue
        if hname.lower() == "strict-transport-security":
            chk.fail(where, f"headers: {hname} - set HSTS with the hsts key (it is sent with TLS only)")
            continue
        if hval is not None and (not isinstance(hval, (str, int)) or '"' in str(hval)):
            chk.fail(where, f"headers.{hname}: {hval!r} must be text without double quotes (or null to drop it)")
            continue
        headers[hname.lower()] = (hname, hval)
    site["headers"] = [{"name": k, "value": str(v)} for k, v in sorted(headers.values(), key=lambda kv: kv[0].lower())
                       if v is not None]


def _static(chk, where, raw, site, st):
    if site["type"] != "static":
        return
    root = raw.get("root", site["default_root"])
    if not isinstance(root, str) or not PATH.match(root) or root.rstrip("/") in ("", "/etc", "/usr", "/var"):
        chk.fail(where, f"root: {root!r} must be an absolute directory path (no spaces, quotes or ;)")
        root = site["default_root"]
    site["root"] = root.rstrip("/")
    site["root_managed"] = site["root"] == site["default_root"]
    content = raw.get("content", {})
    if isinstance(content, str):
        content = {"index.html": content}
    if not isinstance(content, dict):
        chk.fail(where, f"content: must be the text of index.html or a mapping of file -> text, got {type(content).__name__}")
        content = {}
    files = []
    for rel, text in content.items():
        if not isinstance(rel, str) or not REL_FILE.match(rel):
            chk.fail(where, f"content: {rel!r} must be a relative file path inside the root")
            continue
        if not isinstance(text, str):
            chk.fail(where, f"content.{rel}: must be text")
            continue
        files.append({"path": rel, "content": text})
    site["content"] = sorted(files, key=lambda f: f["path"])
    index = raw.get("index", ["index.html"])
    if isinstance(index, str):
        index = [index]
    if not isinstance(index, list) or not all(isinstance(i, str) and re.match(r"^[A-Za-z0-9._-]+$", i) for i in index):
        chk.fail(where, f"index: {index!r} must be a list of file names")
        index = ["index.html"]
    site["index"] = index


def _proxy(chk, where, raw, site, st):
    if site["type"] != "proxy":
        return
    ups = raw.get("upstreams")
    if not isinstance(ups, list) or not ups:
        chk.fail(where, "upstreams: a proxy site needs at least one upstream (address:port)")
        ups = []
    health = raw.get("health", {})
    if health is None:
        health = {}
    if not chk.keys(f"{where}: health", health, HEALTH_KEYS):
        health = {}
    hmax = health.get("max_fails", 3)
    hto = health.get("fail_timeout", "10s")
    if not _int_in(hmax, 0, 1000):
        chk.fail(where, f"health.max_fails: {hmax!r} must be an integer 0-1000")
    if not DURATION.match(str(hto)):
        chk.fail(where, f"health.fail_timeout: {hto!r} must be a duration such as 10s")
    hpath = health.get("path", "/")
    if not isinstance(hpath, str) or not PATH.match(hpath):
        chk.fail(where, f"health.path: {hpath!r} must be an absolute URL path")
        hpath = "/"
    site["health"] = {"path": hpath, "status": _status_list(chk, f"{where}: health.status", health.get("status"), [200]),
                      "max_fails": hmax, "fail_timeout": str(hto)}
    site["upstreams"] = _upstreams(chk, where, ups, hmax, hto)
    scheme = raw.get("upstream_scheme", "http")
    if scheme not in ("http", "https"):
        chk.fail(where, f"upstream_scheme: {scheme!r} must be http or https")
    site["upstream_scheme"] = scheme
    # The Host header sent upstream: the client's ($host) unless the upstream expects its own
    # name (Ollama on loopback refuses other names with 403).
    uhost = raw.get("upstream_host", "$host")
    if not isinstance(uhost, str) or not re.match(r"^(\$host|[A-Za-z0-9.-]+(:[0-9]+)?|\[[0-9a-fA-F:]+\](:[0-9]+)?)$", uhost):
        chk.fail(where, f"upstream_host: {uhost!r} must be $host or a host name or address with an optional port")
    site["upstream_host"] = uhost
    rto = raw.get("proxy_read_timeout", "60s")
    if not DURATION.match(str(rto)):
        chk.fail(where, f"proxy_read_timeout: {rto!r} must be a duration such as 60s")
    site["proxy_read_timeout"] = str(rto)


def _upstreams(chk, where, ups, hmax, hto):
    """The upstream servers; ``max_fails`` and ``fail_timeout`` default to the site's health settings."""
    servers = []
    for i, u in enumerate(ups):
        if isinstance(u, str):
            u = {"address": u}
        if not chk.keys(f"{where}: upstreams[{i}]", u, UPSTREAM_KEYS):
            continue
        addr = parse_host_port(u.get("address", ""))
        if addr is None:
            chk.fail(where, f"upstreams[{i}]: {u.get('address')!r} is not an address:port "
                            "(e.g. 127.0.0.1:8080 or [::1]:8080) or unix:/path")
            continue
        weight = u.get("weight", 1)
        if not _int_in(weight, 1, 1000):
            chk.fail(where, f"upstreams[{i}].weight: {weight!r} must be an integer 1-1000")
        backup = u.get("backup", False)
        if not _is_bool(backup):
            chk.fail(where, f"upstreams[{i}].backup: {backup!r} must be true or false")
        mf = u.get("max_fails", hmax)
        ft = u.get("fail_timeout", hto)
        if not _int_in(mf, 0, 1000) or not DURATION.match(str(ft)):
            chk.fail(where, f"upstreams[{i}]: max_fails must be an integer and fail_timeout a duration")
        servers.append({"address": addr, "weight": weight, "backup": bool(backup), "max_fails": mf,
                        "fail_timeout": str(ft)})
    if servers and all(x["backup"] for x in servers):
        chk.fail(where, "upstreams: every upstream is a backup; at least one must be a primary")
    return servers


def _rate_limit(chk, where, raw, site, st):
    rl = raw.get("rate_limit")
    if isinstance(rl, str):
        rl = {"zone": rl}
    if rl is None:
        site["rate_limit"] = None
    elif chk.keys(f"{where}: rate_limit", rl, RATE_KEYS):
        zone = rl.get("zone")
        if zone not in st.zones:
            chk.fail(where, f"rate_limit.zone: {zone!r} is not defined in nginx_rate_limit_zones "
                            f"(defined: {', '.join(sorted(st.zones)) or 'none'})")
        burst = rl.get("burst", 10)
        if not _int_in(burst, 0, 100000):
            chk.fail(where, f"rate_limit.burst: {burst!r} must be an integer >= 0")
        nodelay = rl.get("nodelay", True)
        if not _is_bool(nodelay):
            chk.fail(where, f"rate_limit.nodelay: {nodelay!r} must be true or false")
        site["rate_limit"] = {"zone": zone, "burst": burst, "nodelay": bool(nodelay)}
    else:
        site["rate_limit"] = None


def _gzip(chk, where, raw, site, st):
    gzip = raw.get("gzip", st.given.get("gzip", True))
    if not _is_bool(gzip):
        chk.fail(where, f"gzip: {gzip!r} must be true or false")
    site["gzip"] = bool(gzip)


def _auth(chk, where, raw, site, st):
    auth = raw.get("auth")
    site["auth"] = None
    if auth is None or not chk.keys(f"{where}: auth", auth, AUTH_KEYS):
        return
    users = auth.get("users")
    ok_users = []
    if not isinstance(users, list) or not users:
        chk.fail(where, "auth.users: basic auth needs at least one user (name and password or password_hash)")
        users = []
    for i, u in enumerate(users):
        if not chk.keys(f"{where}: auth.users[{i}]", u, USER_KEYS):
            continue
        if not isinstance(u.get("name"), str) or not USER_NAME.match(u["name"]):
            chk.fail(where, f"auth.users[{i}].name: {u.get('name')!r} must be a name without ':' or spaces")
            continue
        if bool(u.get("password")) == bool(u.get("password_hash")):
            chk.fail(where, f"auth.users[{i}] ({u['name']}): give exactly one of password and password_hash")
            continue
        if u.get("password_hash") and not re.match(r"^(\$[0-9a-z]+\$|\{[A-Z0-9-]+\})\S+$", str(u["password_hash"])):
            chk.fail(where, f"auth.users[{i}] ({u['name']}).password_hash: not a crypt(3) hash such as $6$...")
            continue
        ok_users.append({k: u[k] for k in ("name", "password", "password_hash") if u.get(k)})
    realm = auth.get("realm", "Restricted")
    if not isinstance(realm, str) or '"' in realm or not realm:
        chk.fail(where, f"auth.realm: {realm!r} must be text without double quotes")
    plain = auth.get("allow_plain_http", False)
    if not site["tls"]["enabled"] and plain is not True:
        chk.fail(where, "auth: basic auth over plain HTTP sends passwords in clear text; use TLS "
                        "(or set auth.allow_plain_http: true)")
    site["auth"] = {"realm": realm, "users": ok_users, "file": f"{st.tree}/auth/{site['name']}.htpasswd"}


def _extra_directives(chk, where, raw, site, st):
    directives = raw.get("extra_directives", [])
    if isinstance(directives, str):
        directives = [directives]
    if not isinstance(directives, list) or not all(isinstance(d, str) for d in directives):
        chk.fail(where, "extra_directives: must be a list of nginx directives (text)")
        directives = []
    site["extra_directives"] = [d.strip() if d.strip().endswith(("}", ";")) else d.strip() + ";" for d in directives if d.strip()]


def _probe(chk, where, raw, site, st):
    """The probe after a reload."""
    probe = raw.get("probe", {})
    if probe is False:
        site["probe"] = None
    elif chk.keys(f"{where}: probe", probe if probe is not None else {}, PROBE_KEYS):
        probe = probe or {}
        if site["auth"]:
            default_status, default_path = [401], "/"
        elif site["type"] == "proxy":
            default_status, default_path = site["health"]["status"], site["health"]["path"]
        elif any(f["path"] in site.get("index", []) for f in site.get("content", [])):
            default_status, default_path = [200], "/"
        else:  # content deployed by others: served at all is what can be asked
            default_status, default_path = [200, 403, 404], "/"
        ppath = probe.get("path", default_path)
        if not isinstance(ppath, str) or not PATH.match(ppath):
            chk.fail(where, f"probe.path: {ppath!r} must be an absolute URL path")
            ppath = "/"
        status = _status_list(chk, f"{where}: probe.status", probe.get("status"), default_status)
        site["probe"] = {"path": ppath, "status": status}
    else:
        site["probe"] = None


_SECTIONS = (_server_names, _site_type, _listen, _tls, _hsts, _headers, _static, _proxy, _rate_limit, _gzip, _auth,
             _extra_directives, _probe)


def _conflicts(chk, present):
    """A server name served twice on one address:port: nginx would warn and ignore one of them. Sites on one
    TLS address:port must share their protocols, suites and curves: the handshake settings are the socket's."""
    seen, sockets = {}, {}
    for site in present:
        profile = site.get("tls", {}).get("profile")
        for addr in site.get("listen", []) if profile else []:
            key = (addr, site["https_port"])
            if key in sockets and sockets[key][1]["directives"] != profile["directives"]:
                chk.fail(f"site {site['name']}", f"tls: its TLS settings ({profile['name']} profile) differ from those of site "
                                                 f"{sockets[key][0]} ({sockets[key][1]['name']}) on {addr}:{key[1]} - one "
                                                 "address and port has one TLS setting; give one of them another address or port")
            sockets.setdefault(key, (site["name"], profile))
    for site in present:
        ports = [site["https_port"], site["http_port"]] if site.get("tls", {}).get("enabled") else [site.get("http_port")]
        for addr in site.get("listen", []):
            for port in ports:
                for sn in site.get("server_names", []):
                    key = (addr, port, sn)
                    if key in seen and seen[key] != site["name"]:
                        chk.fail(f"site {site['name']}", f"server_names: {sn} on {addr}:{port} is also served by site "
                                                         f"{seen[key]} (nginx would ignore one of them)")
                    seen.setdefault(key, site["name"])


def listeners(sites):
    """The (address, port, ssl) sockets the present sites use - each gets a default server that
    answers no unknown name (HTTP: 444, closes the connection; TLS: handshake rejected)."""
    out, tls = set(), {}
    for site in sites:
        if site["state"] != "present":
            continue
        for addr in site["listen"]:
            out.add((addr, site["http_port"], False))
            if site["tls"]["enabled"]:
                out.add((addr, site["https_port"], True))
                tls.setdefault((addr, site["https_port"]), site["tls"]["profile"]["directives"])
    return [{"address": a, "port": p, "ssl": s, "tls_directives": tls.get((a, p), []) if s else []} for a, p, s in sorted(out)]


def needs_dhparam(sites):
    """True when a present site's profile uses DHE suites (the tree then ships the ffdhe2048 group)."""
    return any(s["state"] == "present" and s["tls"]["enabled"] and s["tls"]["profile"]["dhparam"] for s in sites)


def probes(sites):
    """The probes of the present sites, in the form locus.infra.nginx_tree takes."""
    out = []
    for site in sites:
        if site["state"] != "present" or not site.get("probe") or not site.get("probe_address"):
            continue
        tls = site["tls"]["enabled"]
        out.append({"name": site["name"], "address": site["probe_address"],
                    "port": site["https_port"] if tls else site["http_port"], "scheme": "https" if tls else "http",
                    "server_name": site["server_names"][0].replace("*.", "probe.", 1), "path": site["probe"]["path"], "status": site["probe"]["status"]})
    return out
