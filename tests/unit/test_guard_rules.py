"""The guard's deterministic analysers: each rule on a positive and a negative example."""

from __future__ import annotations

import pytest

from ansible_collections.locus.infra.plugins.plugin_utils import _redact
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard_rules as rules
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _policy

SETTINGS = _policy.load_policy().data["analysers"]

BIRD_BEFORE = """\
router id 10.77.0.11;
protocol kernel {
    ipv4 { export all; };
}
filter peer_out {
    if net ~ [ 10.77.0.0/24+ ] then accept;
    reject;
}
protocol bgp rtr2 {
    local as 65001;
    neighbor 10.77.0.12 as 65002;
    ipv4 {
        import all;
        export filter peer_out;
    };
}
"""


def _rules_of(findings):
    return sorted({f["rule"] for f in findings})


def _file_change(path, before, after, host="h1", action="ansible.builtin.template", args=None, groups=()):
    return {"host": host, "task": "write", "action": action, "args": args or {"dest": path, "mode": "0644"},
            "groups": list(groups), "diff": {"before_header": path, "after_header": path, "before": before, "after": after}}


def analyse(*changes, diff_text=None):
    return rules.analyse_changes(rules.normalise(list(changes), diff_text), SETTINGS)


# -- VMs -------------------------------------------------------------------------------------------
def test_vm_delete_and_stop_are_found_by_module_and_state():
    found = analyse(
        {"host": "pve1", "task": "drop", "action": "locus.infra.proxmox_vm", "args": {"name": "web-old", "state": "absent"}},
        {"host": "pve1", "task": "stop", "action": "community.proxmox.proxmox_kvm", "args": {"name": "db1", "state": "stopped"}},
    )
    by_rule = {f["rule"]: f for f in found}
    assert _rules_of(found) == ["vm_delete", "vm_stop"]
    assert by_rule["vm_delete"]["evidence"]["vm"] == "web-old" and by_rule["vm_delete"]["evidence"]["host"] == "pve1"
    assert "db1" in by_rule["vm_stop"]["message"]


def test_vm_present_or_other_modules_are_not_vm_findings():
    found = analyse(
        {"host": "pve1", "action": "locus.infra.proxmox_vm", "args": {"name": "web1", "state": "started", "cores": 4}},
        {"host": "web1", "action": "ansible.builtin.service", "args": {"name": "nginx", "state": "stopped"}},
    )
    assert found == []


# -- BGP -------------------------------------------------------------------------------------------
def test_changed_bgp_export_filter_is_found_with_its_line():
    after = BIRD_BEFORE.replace("if net ~ [ 10.77.0.0/24+ ] then accept;", "if net ~ [ 0.0.0.0/0+ ] then accept;")
    found = analyse(_file_change("/etc/bird/bird.conf", BIRD_BEFORE, after, host="rtr1"))
    assert _rules_of(found) == ["bgp_filter"]
    assert any("0.0.0.0/0+" in f["evidence"]["line"] and f["evidence"]["file"] == "/etc/bird/bird.conf" for f in found)
    assert all("peer_out" in f["message"] for f in found)


def test_export_all_to_a_bgp_neighbour_is_a_route_leak():
    after = BIRD_BEFORE.replace("export filter peer_out;", "export all;")
    found = analyse(_file_change("/etc/bird/bird.conf", BIRD_BEFORE, after, host="rtr1"))
    assert "bgp_export_all" in _rules_of(found) and "bgp_filter" in _rules_of(found)
    leak = next(f for f in found if f["rule"] == "bgp_export_all")
    assert "protocol bgp rtr2" in leak["message"]


def test_neighbour_change_is_found():
    after = BIRD_BEFORE.replace("neighbor 10.77.0.12 as 65002;", "neighbor 10.77.0.13 as 65003;")
    assert _rules_of(analyse(_file_change("/etc/bird/bird.conf", BIRD_BEFORE, after))) == ["bgp_neighbor"]


def test_unrelated_bird_changes_and_kernel_export_are_not_bgp_findings():
    after = BIRD_BEFORE.replace("router id 10.77.0.11;", "router id 10.77.0.99;\nlog syslog all;")
    assert analyse(_file_change("/etc/bird/bird.conf", BIRD_BEFORE, after)) == []
    kernel = BIRD_BEFORE.replace("ipv4 { export all; };", "ipv4 { export none; };")
    assert analyse(_file_change("/etc/bird/bird.conf", BIRD_BEFORE, kernel)) == []


def test_bgp_rules_work_on_a_unified_diff():
    diff = """\
--- a/etc/bird/bird.conf
+++ b/etc/bird/bird.conf
@@ -12,5 +12,5 @@ protocol bgp rtr2 {
     ipv4 {
         import all;
-        export filter peer_out;
+        export all;
     };
"""
    found = analyse(diff_text=diff)
    assert {"bgp_filter", "bgp_export_all"} <= set(_rules_of(found))
    assert found[0]["evidence"]["file"] == "etc/bird/bird.conf"


# -- nginx: exposure, auth, TLS --------------------------------------------------------------------
NGINX_PRIVATE = """\
server {
    listen 127.0.0.1:8080;
    server_name app.lab;
    auth_basic "staff";
    auth_basic_user_file /etc/nginx/htpasswd;
    location / { proxy_pass http://127.0.0.1:11434; }
}
"""
NGINX_TLS = """\
server {
    listen 10.77.0.21:443 ssl;
    ssl_certificate /etc/ssl/app.pem;
    ssl_certificate_key /etc/ssl/private/app.key;
    server_name app.lab;
}
"""


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "8080", "[::]:8080", "*:80"])
def test_nginx_listening_on_all_addresses_is_public_bind(listen):
    after = NGINX_PRIVATE.replace("127.0.0.1:8080", listen)
    found = analyse(_file_change("/etc/nginx/sites-enabled/app", NGINX_PRIVATE, after, host="web1"))
    assert _rules_of(found) == ["public_bind"]
    assert listen in found[0]["evidence"]["line"] and found[0]["evidence"]["host"] == "web1"


def test_nginx_loopback_or_lan_bind_is_not_public():
    after = NGINX_PRIVATE.replace("127.0.0.1:8080", "10.77.0.21:8080")
    assert analyse(_file_change("/etc/nginx/sites-enabled/app", NGINX_PRIVATE, after)) == []
    assert analyse(_file_change("/etc/nginx/sites-enabled/app", "", NGINX_PRIVATE)) == []


def test_removing_auth_from_a_live_site_is_found():
    after = NGINX_PRIVATE.replace('    auth_basic "staff";\n    auth_basic_user_file /etc/nginx/htpasswd;\n', "")
    found = analyse(_file_change("/etc/nginx/sites-enabled/app", NGINX_PRIVATE, after))
    assert _rules_of(found) == ["auth_removed"]
    assert "auth_basic" in found[0]["evidence"]["line"]
    off = NGINX_PRIVATE.replace('auth_basic "staff";', "auth_basic off;")
    assert "auth_removed" in _rules_of(analyse(_file_change("/etc/nginx/sites-enabled/app", NGINX_PRIVATE, off)))


def test_auth_rewording_or_removing_the_whole_site_is_not_auth_removed():
    reworded = NGINX_PRIVATE.replace('auth_basic "staff";', 'auth_basic "operators";')
    assert analyse(_file_change("/etc/nginx/sites-enabled/app", NGINX_PRIVATE, reworded)) == []
    assert analyse(_file_change("/etc/nginx/sites-enabled/app", NGINX_PRIVATE, "")) == []


def test_removing_tls_from_a_live_site_is_found():
    plain = "server {\n    listen 10.77.0.21:80;\n    server_name app.lab;\n}\n"
    found = analyse(_file_change("/etc/nginx/sites-enabled/app", NGINX_TLS, plain))
    assert _rules_of(found) == ["tls_removed"]


def test_changing_the_certificate_is_not_tls_removed():
    renewed = NGINX_TLS.replace("/etc/ssl/app.pem", "/etc/ssl/app-2026.pem")
    assert analyse(_file_change("/etc/nginx/sites-enabled/app", NGINX_TLS, renewed)) == []


# -- generic binds ------------------------------------------------------------------------------------
def test_service_bound_to_all_addresses_in_an_env_file_or_argument():
    found = analyse(_file_change("/etc/default/ollama", "OLLAMA_HOST=127.0.0.1:11434\n", "OLLAMA_HOST=0.0.0.0:11434\n"))
    assert _rules_of(found) == ["public_bind"]
    found = analyse({"host": "gpu1", "action": "community.docker.docker_container", "args": {"name": "x", "bind_address": "0.0.0.0"}})
    assert _rules_of(found) == ["public_bind"] and found[0]["evidence"]["argument"] == "bind_address"


def test_loopback_binds_and_default_routes_are_not_public_bind():
    found = analyse(_file_change("/etc/default/ollama", "OLLAMA_HOST=127.0.0.1:11434\n", "OLLAMA_HOST=127.0.0.1:11435\n"))
    assert found == []
    route = analyse(_file_change("/etc/network/routes", "", "route add 0.0.0.0/0 via 10.77.0.1\n"))
    assert route == []


# -- K3s -----------------------------------------------------------------------------------------------
def test_change_on_a_k3s_server_is_found():
    found = analyse({"host": "k3s1", "task": "config", "action": "ansible.builtin.template", "args": {"dest": "/etc/x"},
                     "groups": ["k3s_servers", "lab"]})
    assert _rules_of(found) == ["k3s_server"] and found[0]["evidence"]["groups"] == ["k3s_servers"]
    svc = analyse({"host": "k3s1", "action": "ansible.builtin.systemd_service", "args": {"name": "k3s", "state": "restarted"}})
    assert _rules_of(svc) == ["k3s_server"]


def test_change_on_a_k3s_agent_is_not_a_server_finding():
    found = analyse({"host": "k3s-a1", "action": "ansible.builtin.template", "args": {"dest": "/etc/x"}, "groups": ["k3s_agents"]},
                    {"host": "k3s-a1", "action": "ansible.builtin.systemd_service", "args": {"name": "k3s-agent", "state": "restarted"}})
    assert found == []


# -- secrets -----------------------------------------------------------------------------------------
def test_secret_in_a_world_readable_file_is_found_and_masked_in_the_evidence():
    secret = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123"
    found = analyse(_file_change("/etc/app.env", "A=1\n", f"A=1\nANTHROPIC_API_KEY={secret}\n"))
    assert _rules_of(found) == ["plaintext_secret"]
    assert secret not in str(found) and "********" in found[0]["evidence"]["line"]
    assigned = analyse(_file_change("/etc/app.ini", "", "db_password = hunter2hunter2\n"))
    assert _rules_of(assigned) == ["plaintext_secret"] and "hunter2" not in str(assigned)


def test_secret_in_a_private_file_or_a_reference_is_not_found():
    private = _file_change("/etc/app.env", "", "api_key = abcdefgh12345678\n", args={"dest": "/etc/app.env", "mode": "0600"})
    assert analyse(private) == []
    refs = _file_change("/etc/app.ini", "", "password_file = /etc/app/pw\ntoken = {{ vault_token }}\napi_key = ${API_KEY}\n")
    assert analyse(refs) == []


def test_mask_secrets_masks_values_but_keeps_references():
    text = "password = hunter2hunter2\npassword_file = /etc/pw\nkey: sk-ant-api03-abcdefghijklmnop\n"
    masked = rules.mask_secrets(text)
    assert "hunter2" not in masked and "sk-ant-api03" not in masked
    assert "password_file = /etc/pw" in masked
    assert rules.secret_in(masked.splitlines()[0])


@pytest.mark.parametrize(("secret", "hidden"), [
    ("ghp_abcdefghijklmnop1234", "mnop1234"), ("glpat-abcdefghijklmnop12", "mnop12"), ("AKIAABCDEFGHIJKLMNOP", "KLMNOP"),
    ("xoxb-1234567890-abcdef", "0-abcdef"), ("nbt_abcdef123456.0123456789abcdef", "89abcdef"),
    ("K10" + "a" * 40 + "::server:abc", "server:abc"), ("PVEAPIToken=root@pam!ci=1234-5678", "1234-5678"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig", "NiJ9"), ("postgresql://locus:s3cr3tpw@db:5432/locus", "s3cr3tpw"),
])
def test_the_guard_finds_every_credential_form_redact_knows(secret, hidden):
    # one list of patterns: what _redact masks in the audit trail, the guard flags in a change
    assert _redact.secret_spans(f"X={secret}"), secret
    found = analyse(_file_change("/etc/app.env", "", f"SOMETHING={secret}\n"))
    assert _rules_of(found) == ["plaintext_secret"], secret
    assert "********" in found[0]["evidence"]["line"] and hidden not in str(found)


# -- unpredictable and failed ------------------------------------------------------------------------
def test_unpredictable_and_failed_tasks_are_found():
    found = analyse({"host": "h", "task": "run it", "action": "ansible.builtin.command", "status": "unpredictable",
                     "msg": "Command would have run if not in check mode"},
                    {"host": "h", "task": "broken", "action": "ansible.builtin.copy", "status": "failed", "msg": "boom"},
                    {"host": "h", "task": "secret", "action": "ansible.builtin.copy", "censored": True})
    assert _rules_of(found) == ["check_failed", "unpredictable"]
    assert len([f for f in found if f["rule"] == "unpredictable"]) == 2


def test_plain_changes_raise_nothing():
    found = analyse(_file_change("/tmp/motd", "old\n", "new\n"))
    assert found == []


def test_bad_changes_are_rejected_with_the_item_and_key():
    with pytest.raises(ValueError, match=r"changes\[1\]: unknown key\(s\) colour"):
        rules.normalise([{"host": "a"}, {"host": "b", "colour": "red"}])
    with pytest.raises(ValueError, match=r"changes\[0\]\.args must be a mapping"):
        rules.normalise([{"args": "state=absent"}])
    with pytest.raises(ValueError, match=r"changes\[0\]\.status must be one of"):
        rules.normalise([{"status": "maybe"}])


# -- resources ------------------------------------------------------------------------------------------
def test_resources_past_the_thresholds():
    nodes = {  # the shape of locus.infra.proxmox_node_info's nodes
        "pve1": {"cpu_ratio": 0.97, "memory_ratio": 0.5, "disk_ratio": None, "storage": {"local": {"ratio": 0.88}}},
        "pve2": {"cpu_ratio": 0.10, "memory_ratio": 0.2, "disk_ratio": 0.3, "storage": {}},
    }
    found = rules.analyse_resources(nodes, 95.0, 85.0)
    got = sorted((f["rule"], f["evidence"]["resource"], f["evidence"]["metric"]) for f in found)
    assert got == [("resource_exhausted", "pve1", "cpu"), ("resource_pressure", "pve1", "storage:local")]
    assert rules.analyse_resources({"gpu1": {"vram": {"used": 95, "total": 100}}}, 95.0, 85.0)[0]["rule"] == "resource_exhausted"
    assert rules.analyse_resources({"pve2": nodes["pve2"]}, 95.0, 85.0) == []


def test_resources_without_a_usage_metric_are_rejected():
    with pytest.raises(ValueError, match=r"resources\.pve1: no usage metric"):
        rules.analyse_resources({"pve1": {"cpus": 8}}, 95.0, 85.0)
    with pytest.raises(ValueError, match=r"resources\.pve1\.cpu_percent must be a number"):
        rules.analyse_resources({"pve1": {"cpu_percent": "high"}}, 95.0, 85.0)
