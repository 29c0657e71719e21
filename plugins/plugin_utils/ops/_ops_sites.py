# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ask many sites at once from the controller (heartbeat, status report, health review).

Private API of the collection (may change without notice). Controller-only. One request per
site with its name as SNI and Host (:func:`_nginx_tree.probe`, the request
``locus.infra.nginx_probe`` makes), all sites in parallel threads: a host with many sites costs
one task, not one module process per site.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ansible_collections.locus.infra.plugins.module_utils import _nginx_tree

KEYS = ("name", "address", "port")


class SitesError(Exception):
    """Bad input: the message names the site and the key."""


def _check(sites):
    for n, s in enumerate(sites):
        if not isinstance(s, dict):
            raise SitesError(f"sites[{n}] must be a mapping, got {type(s).__name__}")
        missing = [k for k in KEYS if s.get(k) in (None, "")]
        if missing:
            raise SitesError(f"sites[{n}] ({s.get('name') or 'no name'}): {', '.join(missing)} required")
        if s.get("scheme", "https") not in ("http", "https"):
            raise SitesError(f"sites[{n}] ({s['name']}): scheme must be http or https, got {s['scheme']!r}")
        try:
            port = int(s["port"])
        except (TypeError, ValueError):
            port = 0
        if not 0 < port < 65536:
            raise SitesError(f"sites[{n}] ({s['name']}): port {s['port']!r} is not a TCP port")


def probe_all(sites, host, timeout=5.0, workers=16):
    """``[{host, name, status, expected, error, tls, not_after}]`` in the order of ``sites``.

    ``sites``: ``[{name, address, port, scheme, server_name, path, expected}]``.
    """
    sites = list(sites or [])
    _check(sites)

    def one(s):
        scheme = s.get("scheme") or "https"
        r = _nginx_tree.probe(str(s["address"]).strip("[]"), int(s["port"]), scheme, s.get("server_name") or s["name"],
                              s.get("path") or "/", timeout=timeout)
        return {"host": host, "name": s["name"], "status": r["status"], "expected": s.get("expected") or [200], "error": r["error"],
                "tls": scheme == "https", "not_after": (r["certificate"] or {}).get("not_after")}

    if not sites:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(sites)))) as pool:
        return list(pool.map(one, sites))
