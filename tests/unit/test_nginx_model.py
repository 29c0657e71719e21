"""locus.infra.nginx without a host: the site data model, the certbot command, the rendered
site files as the guard reads them, and the tree comparison, password files and probes."""

from __future__ import annotations

import http.server
import os
import threading
from pathlib import Path

import jinja2
import pytest

from ansible_collections.locus.infra.plugins.filter import nginx as nginx_filter
from ansible_collections.locus.infra.plugins.module_utils import _config_tree as ct
from ansible_collections.locus.infra.plugins.module_utils import _nginx_model as model
from ansible_collections.locus.infra.plugins.module_utils import _nginx_tree as tree
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard_rules as rules
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _policy

ROLE = Path(__file__).resolve().parents[2] / "roles" / "nginx"
SETTINGS = {
    "listen": ["10.77.0.21"],
    "host_addresses": ["10.77.0.21", "fd77::21", "127.0.0.1", "::1"],
    "headers": {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                "Referrer-Policy": "strict-origin-when-cross-origin"},
    "zones": [{"name": "per_client", "key": "$binary_remote_addr", "size": "10m", "rate": "5r/s"}],
    "acme": {"email": "ops@example.org", "deploy_hook": "systemctl reload nginx"},
}


def normalise(sites, **settings):
    return model.normalise(sites, "web1", {**SETTINGS, **settings})


def problems(sites, **settings):
    with pytest.raises(model.ModelError) as exc:
        normalise(sites, **settings)
    return exc.value.problems


# ------------------------------------------------------------------ the data model -------------
def test_the_lab_sites_get_their_defaults():
    static, proxy, gone = normalise([
        {"name": "www.lab.example", "tls": "self_signed", "csp": "default-src 'self'", "content": "<h1>hi</h1>"},
        {"name": "app.lab.example", "type": "proxy", "upstreams": ["127.0.0.1:8081", {"address": "[::1]:8082", "backup": True}],
         "health": {"path": "/healthz"}, "rate_limit": "per_client"},
        {"name": "old.lab.example", "state": "absent"},
    ])
    assert static["listen"] == ["10.77.0.21"] and not static["listen_public"]
    assert static["server_names"] == ["www.lab.example"]
    assert static["root"] == "/var/www/locus/www.lab.example" and static["root_managed"]
    assert static["content"] == [{"path": "index.html", "content": "<h1>hi</h1>"}]
    assert static["tls"]["certificate"] == "/var/lib/locus-nginx/tls/www.lab.example/cert.pem"
    assert static["tls"]["redirect_http"] is True
    assert static["hsts"] == "max-age=63072000; includeSubDomains"
    assert {h["name"]: h["value"] for h in static["headers"]} == {
        "Content-Security-Policy": "default-src 'self'", "Referrer-Policy": "strict-origin-when-cross-origin",
        "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}
    assert static["probe"] == {"path": "/", "status": [200]}
    assert [u["address"] for u in proxy["upstreams"]] == ["127.0.0.1:8081", "[::1]:8082"]
    assert proxy["upstreams"][1]["backup"] and proxy["upstreams"][0]["max_fails"] == 3
    assert proxy["probe"] == {"path": "/healthz", "status": [200]}
    assert proxy["rate_limit"] == {"zone": "per_client", "burst": 10, "nodelay": True}
    assert gone == {"name": "old.lab.example", "state": "absent", "id": "site_old_lab_example",
                    "file": "locus/sites/old.lab.example.conf", "default_root": "/var/www/locus/old.lab.example",
                    "self_signed_dir": "/var/lib/locus-nginx/tls/old.lab.example"}


def test_headers_can_be_overridden_and_dropped_and_auth_changes_the_probe():
    (site,) = normalise([{"name": "a.example", "headers": {"X-Frame-Options": "SAMEORIGIN", "Referrer-Policy": None},
                          "hsts": {"max_age": 600, "include_subdomains": False},
                          "auth": {"users": [{"name": "alice", "password": "pw-123456"}]}}])
    assert {h["name"]: h["value"] for h in site["headers"]} == {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "SAMEORIGIN"}
    assert site["hsts"] == "max-age=600"
    assert site["auth"]["file"] == "locus/auth/a.example.htpasswd"
    assert site["probe"]["status"] == [401]


def test_a_static_site_without_its_index_is_probed_for_being_served_at_all():
    empty, custom = normalise([{"name": "a.example"}, {"name": "b.example", "content": {"app.html": "x"}, "index": ["app.html"]}])
    assert empty["probe"] == {"path": "/", "status": [200, 403, 404]}
    assert custom["probe"] == {"path": "/", "status": [200]}


def test_no_default_address_and_wildcards_only_when_asked():
    assert "listen: no address to listen on" in problems([{"name": "a.example"}], listen=[])[0]
    (site,) = normalise([{"name": "a.example", "listen": ["0.0.0.0", "::"]}])
    assert site["listen"] == ["0.0.0.0", "[::]"] and site["listen_public"]
    assert site["probe_address"] == "10.77.0.21"  # probed on the host's own address


def test_every_problem_names_host_site_key_and_reason():
    found = problems([
        {"name": "www.lab.example", "type": "proxy", "upstreams": ["app"], "colour": "red"},
        {"name": "b.example", "listen": ["10.9.9.9"], "tls": "none", "auth": {"users": [{"name": "bob", "password": "x1234567"}]}},
        {"name": "c.example", "rate_limit": {"zone": "nope"}, "server_names": ["C.example"]},
        {"name": "Bad_Name"},
        {"name": "www.lab.example"},
    ])
    expected = [
        "web1: nginx_sites[0] (www.lab.example): unknown key(s) colour (known: ",
        "web1: nginx_sites[0] (www.lab.example): upstreams[0]: 'app' is not an address:port",
        "web1: nginx_sites[1] (b.example): listen[0]: 10.9.9.9 is not an address of this host (it has 10.77.0.21,",
        "web1: nginx_sites[1] (b.example): auth: basic auth over plain HTTP sends passwords in clear text",
        "web1: nginx_sites[2] (c.example): server_names[0]: 'C.example' is not a lower-case DNS name",
        "web1: nginx_sites[2] (c.example): rate_limit.zone: 'nope' is not defined in nginx_rate_limit_zones (defined: per_client)",
        "web1: nginx_sites[3] (Bad_Name): name: 'Bad_Name' must be a lower-case DNS name",
        "web1: nginx_sites[4] (www.lab.example): name: site 'www.lab.example' is defined twice (also nginx_sites[0])",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in found), (line, found)
    assert len(found) == len(expected)


@pytest.mark.parametrize(("site", "fragment"), [
    ({"name": "a.example", "tls": {"mode": "provided", "certificate": "nope"}}, "tls.certificate: must be the PEM text"),
    ({"name": "a.example", "tls": "letsencrypt"}, "tls.mode: 'letsencrypt' must be one of"),
    ({"name": "a.example", "type": "proxy", "upstreams": []}, "upstreams: a proxy site needs at least one upstream"),
    ({"name": "a.example", "type": "proxy", "upstreams": [{"address": "127.0.0.1:1", "backup": True}]}, "every upstream is a backup"),
    ({"name": "a.example", "root": "relative/dir"}, "root: 'relative/dir' must be an absolute directory path"),
    ({"name": "a.example", "content": {"../etc/passwd": "x"}}, "content: '../etc/passwd' must be a relative file path"),
    ({"name": "a.example", "upstreams": ["127.0.0.1:80"]}, "upstreams: only for type proxy"),
    ({"name": "a.example", "headers": {"X-Evil": 'a" always; return 200 "pwned'}}, "must be text without double quotes"),
    ({"name": "a.example", "headers": {"Strict-Transport-Security": "max-age=1"}}, "set HSTS with the hsts key"),
    ({"name": "a.example", "https_port": 80}, "https_port: 80 is also the http_port"),
    ({"name": "a.example", "probe": {"status": 999}}, "probe.status: must be an HTTP status"),
    ({"name": "a.example", "tls": "acme", "server_names": ["*.a.example"]}, "a wildcard name needs a DNS-01 challenge"),
    ({"name": "a.example", "auth": {"users": [{"name": "x", "password": "p", "password_hash": "$6$a$b"}]}},
     "give exactly one of password and password_hash"),
])
def test_bad_site_data_is_refused(site, fragment):
    found = problems([site])
    assert any(fragment in p and p.startswith("web1: nginx_sites[0] (a.example): ") for p in found), found


def test_one_name_on_one_socket_twice_is_refused():
    found = problems([{"name": "a.example", "server_names": ["x.example"]}, {"name": "b.example", "server_names": ["x.example"]}])
    assert found == ["web1: site b.example: server_names: x.example on 10.77.0.21:443 is also served by site a.example "
                     "(nginx would ignore one of them)",
                     "web1: site b.example: server_names: x.example on 10.77.0.21:80 is also served by site a.example "
                     "(nginx would ignore one of them)"]


def test_the_filter_reports_every_problem_in_one_error_and_checks_the_zones():
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError) as exc:
        nginx_filter.nginx_sites([{"name": "a.example", "gzip": "yes"}, {"name": "b.example", "type": "cgi"}], "web1", SETTINGS)
    assert str(exc.value).startswith("locus.infra.nginx: 2 problem(s) in the site data:\n")
    assert "web1: nginx_sites[0] (a.example): gzip: 'yes' must be true or false" in str(exc.value)
    assert "web1: nginx_sites[1] (b.example): type: 'cgi' must be static or proxy" in str(exc.value)
    with pytest.raises(AnsibleFilterError, match=r"nginx_rate_limit_zones\[0\]: rate: '5 per second' is not a rate"):
        nginx_filter.nginx_rate_limit_zones([{"name": "z", "rate": "5 per second"}], "web1")


# ------------------------------------------------------------------ ACME ----------------------
def test_certbot_command_for_an_acme_site():
    (site,) = normalise([{"name": "shop.example.org", "server_names": ["shop.example.org", "www.shop.example.org"], "tls": "acme"}],
                        acme={"email": "ops@example.org", "server": "https://acme.internal/directory", "key_type": "ecdsa",
                              "deploy_hook": "nginx -t -q && systemctl reload nginx", "extra_args": ["--rsa-key-size", "4096"]})
    assert site["tls"]["certbot"] == [
        "certbot", "certonly", "--webroot", "--webroot-path", "/var/lib/locus-nginx/acme", "--cert-name", "shop.example.org",
        "--non-interactive", "--agree-tos", "--keep-until-expiring", "--domain", "shop.example.org",
        "--domain", "www.shop.example.org", "--email", "ops@example.org", "--server", "https://acme.internal/directory",
        "--key-type", "ecdsa", "--deploy-hook", "nginx -t -q && systemctl reload nginx", "--rsa-key-size", "4096"]
    # Until issued, the site serves its self-signed certificate; afterwards certbot's files.
    assert site["tls"]["certificate"] == "/var/lib/locus-nginx/tls/shop.example.org/cert.pem"
    (issued,) = normalise([{"name": "shop.example.org", "tls": "acme"}], acme_issued=["shop.example.org"])
    assert issued["tls"]["certificate"] == "/etc/letsencrypt/live/shop.example.org/fullchain.pem"
    assert issued["tls"]["private_key"] == "/etc/letsencrypt/live/shop.example.org/privkey.pem"


def test_certbot_without_email_and_on_staging():
    argv = model.certbot_argv({"name": "a.example", "server_names": ["a.example"]}, {"staging": True, "server": "ignored"}, "/w")
    assert "--register-unsafely-without-email" in argv and "--staging" in argv and "--server" not in argv


# ------------------------------------------------------------------ rendered files, as the guard reads them
def render_site(site):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROLE / "templates")), trim_blocks=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - nginx config, not HTML
    env.filters["bool"] = bool
    return env.get_template("site.conf.j2").render(site=site, nginx_http2=True, nginx_state_dir="/var/lib/locus-nginx")


def findings(before, after, path="/etc/nginx/locus/sites/a.example.conf"):
    change = rules.normalise([{"host": "web1", "task": "apply", "diff": {"before": before, "after": after, "before_header": path}}])
    return sorted({f["rule"] for f in rules.analyse_changes(change, _policy.load_policy().data["analysers"])})


def test_rendered_sites_are_plain_to_the_guard():
    base = {"name": "a.example", "auth": {"users": [{"name": "alice", "password": "pw-123456"}]}}
    (site,) = normalise([base])
    text = render_site(site)
    assert "    listen 10.77.0.21:443 ssl http2;\n" in text
    assert "    return 301 https://$host$request_uri;\n" in text
    assert '    add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;\n' in text
    assert "    auth_basic_user_file locus/auth/a.example.htpasswd;\n" in text
    assert findings("", text) == []  # a new site on the host's own address: nothing to flag
    (public,) = normalise([{**base, "listen": ["0.0.0.0"]}])
    assert findings(text, render_site(public)) == ["public_bind"]
    (no_auth,) = normalise([{"name": "a.example"}])
    assert findings(text, render_site(no_auth)) == ["auth_removed"]
    (no_tls,) = normalise([{**base, "tls": "none", "auth": {**base["auth"], "allow_plain_http": True}}])
    assert "tls_removed" in findings(text, render_site(no_tls))
    assert findings(text, "") == []  # removing the whole site exposes nothing


def test_rendered_proxy_site():
    (site,) = normalise([{"name": "a.example", "type": "proxy", "upstreams": ["127.0.0.1:8081", {"address": "unix:/run/app.sock", "weight": 2}],
                          "tls": {"mode": "self_signed", "redirect_http": False}, "extra_directives": ["client_max_body_size 5m"]}])
    text = render_site(site)
    assert "upstream site_a_example {\n    server 127.0.0.1:8081 max_fails=3 fail_timeout=10s;\n" in text
    assert "    server unix:/run/app.sock weight=2 max_fails=3 fail_timeout=10s;\n" in text
    assert "    listen 10.77.0.21:443 ssl http2;\n    listen 10.77.0.21:80;\n" in text  # one server, both ports
    assert "return 301" not in text
    assert "        proxy_pass http://site_a_example;\n" in text
    assert "        proxy_hide_header X-Frame-Options;\n" in text
    assert "    client_max_body_size 5m;\n" in text


# ------------------------------------------------------------------ TLS profiles (Mozilla 5.7) --
MOZILLA_INTERMEDIATE_TLS12 = (  # ssl-config.mozilla.org, guidelines 5.7, as sslyze 6.3 ships them (openssl names)
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:"
    "DHE-RSA-CHACHA20-POLY1305")


def test_intermediate_is_the_default_profile_exactly_as_mozilla_writes_it():
    (site,) = normalise([{"name": "a.example"}])
    profile = site["tls"]["profile"]
    assert profile["name"] == "intermediate" and not profile["weakened"] and profile["certificate_days"] == 365
    assert profile["directives"] == [
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_ecdh_curve X25519:prime256v1:secp384r1;",
        f"ssl_ciphers {MOZILLA_INTERMEDIATE_TLS12};",
        "ssl_prefer_server_ciphers off;",
        "ssl_dhparam locus/tls/ffdhe2048.pem;",
    ]
    assert site["tls"]["ocsp_stapling"] is False  # self-signed: no responder
    text = render_site(site)
    assert "    # TLS profile intermediate (Mozilla)\n    ssl_protocols TLSv1.2 TLSv1.3;\n" in text
    assert "ssl_stapling" not in text
    assert model.needs_dhparam([site])


def test_modern_is_tls13_only_with_90_day_certificates_and_no_dh():
    (site,) = normalise([{"name": "a.example", "tls": {"profile": "modern"}}])
    profile = site["tls"]["profile"]
    assert profile["directives"] == ["ssl_protocols TLSv1.3;", "ssl_ecdh_curve X25519:prime256v1:secp384r1;",
                                     "ssl_prefer_server_ciphers off;"]
    assert profile["certificate_days"] == 90 and not model.needs_dhparam([site])
    (by_default,) = normalise([{"name": "a.example"}], tls_profile="modern")
    assert by_default["tls"]["profile"] == profile


def test_the_role_ships_rfc7919_ffdhe2048():
    import base64

    import yaml

    pem = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["nginx_ffdhe2048"]
    der = base64.b64decode("".join(line for line in pem.splitlines() if not line.startswith("-----")))
    # RFC 7919 appendix A.1: p starts with 64 one-bits then AD F8 54 58 A2 BB 4A 9A, g = 2
    assert der[:4] == bytes.fromhex("30820108") and der[9:17] == b"\xff" * 8 and der[17:25] == bytes.fromhex("adf85458a2bb4a9a")
    assert der[-3:] == bytes.fromhex("020102")


def test_a_site_may_narrow_its_profile():
    (site,) = normalise([{"name": "a.example", "tls": {"ciphers": ["ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"],
                                                       "curves": "X25519"}}])
    d = site["tls"]["profile"]["directives"]
    assert "ssl_ciphers ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305;" in d
    assert "ssl_ecdh_curve X25519;" in d
    assert not any(x.startswith("ssl_dhparam") for x in d)  # no DHE suite left
    assert not site["tls"]["profile"]["weakened"]


@pytest.mark.parametrize("tls, fragment", [
    ({"profile": "old"}, "tls.profile: 'old' weakens TLS below Mozilla's intermediate profile; name it under tls.weaken"),
    ({"profile": "legacy"}, "tls.profile: 'legacy' must be modern or intermediate"),
    ({"protocols": ["TLSv1.1", "TLSv1.2"]}, "tls.protocols: TLSv1.1 not in the intermediate profile - that weakens it"),
    ({"ciphers": ["AES128-SHA"]}, "tls.ciphers: AES128-SHA not in the intermediate profile - that weakens it"),
    ({"curves": ["X448", "secp521r1"]}, "tls.curves: X448, secp521r1 not in the intermediate profile"),
    ({"profile": "modern", "protocols": ["TLSv1.2"]}, "tls.protocols: TLSv1.2 not in the modern profile"),
    ({"weaken": {"profile": "old"}}, "tls.weaken.reason: a weakened TLS profile needs a reason"),
    ({"weaken": {"reason": "pos", "ciphers": "AES128-SHA;evil"}}, "tls.weaken.ciphers: must be a non-empty list of OpenSSL cipher suite names"),
    ({"weaken": {"reason": "pos", "protocols": ["SSLv3"]}}, "tls.weaken.protocols: must be a non-empty list of protocols"),
    ({"weaken": {"reason": "x", "nope": 1}}, "tls.weaken: unknown key(s) nope"),
    ({"ocsp_stapling": True}, "tls.ocsp_stapling: a self-signed certificate has no OCSP responder"),
    ({"mode": "none", "profile": "modern"}, "tls.profile: only for a site with TLS"),
])
def test_weakening_needs_tls_weaken_with_a_reason(tls, fragment):
    found = problems([{"name": "a.example", "tls": tls, **({"auth": None} if tls.get("mode") == "none" else {})}])
    assert any(fragment in p for p in found), found
    assert all(p.startswith("web1: nginx_sites[0] (a.example): ") for p in found), found


def test_the_role_default_cannot_be_old():
    assert any("nginx_tls_profile: 'old' must be modern or intermediate" in p
               for p in problems([{"name": "a.example"}], tls_profile="old"))


def test_a_named_weakening_is_applied_and_marked():
    (site,) = normalise([{"name": "a.example", "tls": {"weaken": {"profile": "old", "reason": "POS terminals until 2027"}}}])
    profile = site["tls"]["profile"]
    assert profile["weakened"] and profile["reason"] == "POS terminals until 2027"
    assert "ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;" in profile["directives"]
    assert any(d.startswith("ssl_ciphers ") and d.endswith(":DES-CBC3-SHA:@SECLEVEL=0;") for d in profile["directives"])
    assert "ssl_prefer_server_ciphers on;" in profile["directives"]
    assert "# TLS profile old (Mozilla) - weakened: POS terminals until 2027" in render_site(site)
    (one,) = normalise([{"name": "a.example", "tls": {"weaken": {"reason": "scanner", "curves": ["X25519", "secp521r1"]}}}])
    assert one["tls"]["profile"]["name"] == "intermediate" and one["tls"]["profile"]["weakened"]
    (same,) = normalise([{"name": "a.example", "tls": {"weaken": {"reason": "nothing", "curves": ["X25519"]}}}])
    assert not same["tls"]["profile"]["weakened"]  # a "weakening" that stays inside the profile is none


def test_certificate_days_follow_the_profile():
    (site,) = normalise([{"name": "a.example"}], self_signed_days=200)
    assert site["tls"]["profile"]["certificate_days"] == 200
    assert any("nginx_self_signed_days: 825 - the intermediate profile allows certificates of 1-365 days" in p
               for p in problems([{"name": "a.example"}], self_signed_days=825))
    assert any("the modern profile allows certificates of 1-90 days" in p
               for p in problems([{"name": "a.example", "tls": {"profile": "modern"}}], self_signed_days=365))


def test_stapling_is_on_for_chains_from_a_ca():
    pem = {"certificate": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
           "private_key": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"}
    (provided, acme, waiting) = normalise([{"name": "a.example", "tls": pem}, {"name": "b.example", "tls": "acme"},
                                           {"name": "c.example", "tls": "acme"}], acme_issued=["b.example"])
    assert provided["tls"]["ocsp_stapling"] and acme["tls"]["ocsp_stapling"] and not waiting["tls"]["ocsp_stapling"]
    assert "    ssl_stapling on;\n    ssl_stapling_verify on;\n" in render_site(provided)
    (off,) = normalise([{"name": "a.example", "tls": {**pem, "ocsp_stapling": False}}])
    assert not off["tls"]["ocsp_stapling"]


def test_one_socket_has_one_tls_setting():
    found = problems([{"name": "a.example"}, {"name": "b.example", "tls": {"profile": "modern"}}])
    assert any("site b.example: tls: its TLS settings (modern profile) differ from those of site a.example (intermediate) "
               "on 10.77.0.21:443" in p for p in found), found
    modern = {"name": "b.example", "tls": {"profile": "modern"}, "https_port": 8443, "http_port": 8080}
    sites = normalise([{"name": "a.example"}, modern])
    by_port = {(x["port"], x["ssl"]): x["tls_directives"] for x in model.listeners(sites)}
    assert by_port[(443, True)] == sites[0]["tls"]["profile"]["directives"]
    assert by_port[(8443, True)] == sites[1]["tls"]["profile"]["directives"] and by_port[(80, False)] == []


def test_weakening_is_a_guard_finding_with_evidence():
    (site,) = normalise([{"name": "a.example"}])
    text = render_site(site)
    (modern,) = normalise([{"name": "a.example", "tls": {"profile": "modern"}}])
    assert findings(text, render_site(modern)) == []  # stricter: nothing to flag
    for weaken in ({"profile": "old"}, {"protocols": ["TLSv1.1", "TLSv1.2", "TLSv1.3"]}, {"ciphers": ["AES128-SHA"]},
                   {"curves": ["X25519", "X448"]}):
        (weak,) = normalise([{"name": "a.example", "tls": {"weaken": {"reason": "legacy client", **weaken}}}])
        change = rules.normalise([{"host": "web1", "task": "apply", "diff": {"before": text, "after": render_site(weak),
                                                                             "before_header": "/etc/nginx/locus/sites/a.example.conf"}}])
        found = [f for f in rules.analyse_changes(change, _policy.load_policy().data["analysers"]) if f["rule"] == "crypto_weakened"]
        assert found, weaken
        assert found[0]["evidence"]["host"] == "web1" and found[0]["evidence"]["line"].startswith("+")
    assert _policy.load_policy().data["risk"]["rules"]["crypto_weakened"] == "medium"


# ------------------------------------------------------------------ the tree ------------------
def test_compare_reports_added_changed_removed_and_hides_secrets(tmp_path):
    conf = tmp_path / "nginx"
    ct.write_tree(str(conf), [ct.Entry("nginx.conf", "main\n", 0o644),
                              ct.Entry("locus/sites/a.conf", "a\n", 0o644),
                              ct.Entry("locus/sites/gone.conf", "gone\n", 0o644),
                              ct.Entry("locus/tls/a.key", "OLD KEY\n", 0o600, secret=True)], "locus", tree.DIR_MODE)
    live = ct.read_live(str(conf), "nginx.conf", "locus")
    assert set(live) == {"nginx.conf", "locus/sites/a.conf", "locus/sites/gone.conf", "locus/tls/a.key"}
    assert (conf / "locus" / "sites").stat().st_mode & 0o777 == 0o755
    desired = [ct.Entry("nginx.conf", "main\n", 0o644), ct.Entry("locus/sites/a.conf", "a2\n", 0o644),
               ct.Entry("locus/sites/b.conf", "b\n", 0o640), ct.Entry("locus/tls/a.key", "NEW KEY\n", 0o600, secret=True)]
    changes, diffs = ct.compare(desired, live, str(conf))
    assert [(c["path"].replace(str(conf), ""), c["action"]) for c in changes] == [
        ("/locus/sites/a.conf", "changed"), ("/locus/sites/b.conf", "added"), ("/locus/sites/gone.conf", "removed"),
        ("/locus/tls/a.key", "changed")]
    key_diff = diffs[-1]
    assert "KEY" not in key_diff["before"] + key_diff["after"]
    assert key_diff["before"].startswith("(secret content not shown, sha256 ") and key_diff["before"] != key_diff["after"]
    assert diffs[0] == {"before_header": f"{conf}/locus/sites/a.conf", "after_header": f"{conf}/locus/sites/a.conf",
                        "before": "a\n", "after": "a2\n"}
    same, _diffs = ct.compare([ct.Entry(p, c[0], c[1]) for p, c in live.items()], live, str(conf))
    assert same == []
    mode_only, mode_diff = ct.compare([ct.Entry("nginx.conf", "main\n", 0o600)], {"nginx.conf": live["nginx.conf"]}, str(conf))
    assert mode_only[0]["what"] == ["mode 0o644 -> 0o600"] and mode_diff[0]["after"].endswith("# mode 0o600\n")


@pytest.mark.parametrize(("step", "live_main", "live_tree"), [("promote", "new\n", ["b.conf"]), ("restore", "old\n", ["a.conf"])])
def test_promote_and_restore_flush_the_configuration_directory_after_their_renames(tmp_path, monkeypatch, step,
                                                                                   live_main, live_tree):
    # The renames must be on disk before nginx is told to load the tree (a power cut after the reload
    # could otherwise bring back the other tree under a running nginx); a rollback is the same promise.
    # Each fsync is recorded with what its descriptor is and what the live main file held at that
    # moment, then really done.
    conf = tmp_path / "nginx"
    ct.write_tree(str(conf), [ct.Entry("nginx.conf", "old\n", 0o644), ct.Entry("locus/a.conf", "a\n", 0o644)],
                  "locus", tree.DIR_MODE)
    transaction = tree.Transaction(None, str(conf), "nginx.conf", "locus", "nginx", None, [], 1.0)
    transaction.stage = str(conf / ".locus-stage-test")
    ct.write_tree(transaction.stage, [ct.Entry("nginx.conf", "new\n", 0o644), ct.Entry("locus/b.conf", "b\n", 0o644)],
                  "locus", tree.DIR_MODE)
    if step == "restore":
        transaction.promote()
        assert (Path(transaction.backup) / "nginx.conf").read_text() == "old\n"
    synced, real_fsync = [], os.fsync

    def recording_fsync(fd):
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), (conf / "nginx.conf").read_text()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    getattr(transaction, step)()
    assert synced == [(str(conf), live_main)]  # the configuration directory, once, after the renames
    assert sorted(os.listdir(conf / "locus")) == live_tree
    transaction.cleanup()


@pytest.mark.parametrize(("path", "ok"), [("nginx.conf", True), ("locus/sites/a.conf", True), ("locus/../x", False),
                                          ("/etc/passwd", False), ("sites-enabled/default", False), ("locus", False)])
def test_paths_stay_inside_the_tree(path, ok):
    if ok:
        assert ct.check_relpath(path, "nginx.conf", "locus") == path
    else:
        with pytest.raises(ValueError):
            ct.check_relpath(path, "nginx.conf", "locus")


def test_password_file_keeps_a_matching_hash_and_rehashes_a_new_password():
    first = tree.htpasswd_content([{"name": "alice", "password": "s3cret-pw"}], "")
    name, field = first.strip().split(":", 1)
    assert name == "alice" and field.startswith("$6$")
    salt = field.split("$")[2]
    assert tree.openssl_passwd("s3cret-pw", salt) == field  # what nginx's crypt() will compute
    assert tree.htpasswd_content([{"name": "alice", "password": "s3cret-pw"}], first) == first
    changed = tree.htpasswd_content([{"name": "alice", "password": "other-pw"}], first)
    assert changed != first and changed.startswith("alice:$6$")
    given = tree.htpasswd_content([{"name": "bob", "password_hash": "$6$abc$xyz"}], first)
    assert given == "bob:$6$abc$xyz\n"


def test_nginx_messages_name_the_live_files():
    out = 'nginx: [emerg] unknown directive "x" in /etc/nginx/.locus-stage-ab12/locus/sites/a.conf:3'
    assert ct.relabel(out, "/etc/nginx/.locus-stage-ab12", "/etc/nginx") == \
        'nginx: [emerg] unknown directive "x" in /etc/nginx/locus/sites/a.conf:3'


def test_a_reload_refused_only_for_held_sockets_means_restart():
    held = ["2026/11/21 09:36:27 [emerg] 259#259: bind() to 10.77.0.21:80 failed (98: Address already in use)",
            "2026/11/21 09:36:27 [emerg] 259#259: still could not bind()"]
    assert tree.bind_conflict(held)
    assert not tree.bind_conflict(held + ['[emerg] 1#1: host not found in upstream "app:80"'])
    assert not tree.bind_conflict([])


# ------------------------------------------------------------------ probes (loopback) ---------
class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server API
        body = f"host={self.headers['Host']} path={self.path}".encode()
        self.send_response(200 if self.path != "/missing" else 404)
        self.send_header("X-Test", "yes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_probe_sends_the_site_name_and_reports_status_and_headers(http_server):
    res = tree.probe("127.0.0.1", http_server, "http", "www.example.org", "/x?y=1")
    assert res["status"] == 200 and res["error"] is None
    assert res["headers"]["x-test"] == "yes"
    assert res["body"] == f"host=www.example.org:{http_server} path=/x?y=1"
    waited = tree.probe_until({"address": "127.0.0.1", "port": http_server, "scheme": "http", "path": "/missing",
                               "status": [200]}, timeout=0.6)
    assert waited["status"] == 404 and not waited["passed"] and waited["expected"] == [200]


def test_probe_reports_a_closed_port_as_an_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = tree.probe("127.0.0.1", port, "https", "x.example", timeout=2)
    assert res["status"] is None and res["error"].startswith("ConnectionRefusedError")


def test_the_role_documents_every_default():
    import yaml

    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert set(defaults) == set(spec), set(defaults) ^ set(spec)
    assert os.path.isfile(ROLE / "tasks" / "main.yml")


def test_ansible_doc_works_for_the_nginx_plugins_and_role():
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    for args in (["locus.infra.nginx_tree"], ["locus.infra.nginx_probe"], ["-t", "filter", "locus.infra.nginx_sites"],
                 ["-t", "filter", "locus.infra.nginx_listeners"], ["-t", "filter", "locus.infra.nginx_probes"],
                 ["-t", "filter", "locus.infra.nginx_rate_limit_zones"],
                 ["-t", "filter", "locus.infra.nginx_needs_dhparam"], ["-t", "role", "locus.infra.nginx"]):
        proc = subprocess.run([str(bin_dir / "ansible-doc"), *args], capture_output=True, text=True,
                              cwd=ROLE.parents[1], check=False)
        assert proc.returncode == 0 and args[-1] in proc.stdout, (args, proc.stderr)
