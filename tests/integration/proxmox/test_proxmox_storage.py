"""locus.infra.proxmox_storage (type pbs) against the PVE API double: registration, idempotence,
check and diff mode, secrets never in the output, refusal of other storage types."""

from __future__ import annotations

import json

FINGERPRINT = ":".join(f"{i * 7 % 256:02X}" for i in range(32))
PASSWORD = "pbs-token-secret-4f1c9a"  # noqa: S105 - a test value that must never appear in output
KEY = json.dumps({"kdf": None, "created": "2026-12-06T10:00:00Z", "data": "c2VjcmV0LWtleS1tYXRlcmlhbC0xMjM0NTY3OA=="})


def pbs(**extra):
    spec = {"storage": "pbs-main", "server": "pbs.example.com", "datastore": "main", "username": "backup@pbs!pve",
            "password": PASSWORD, "fingerprint": FINGERPRINT, "encryption_key": KEY}
    spec.update(extra)
    return spec


def test_register_then_unchanged_and_secrets_never_returned(pve, run_module):
    check = run_module("proxmox_storage", check=True, diff=True, **pbs())
    assert check["rc"] == 0, check["msg"]
    assert check["changed"] and "pbs-main" not in pve.pbs_config
    first = run_module("proxmox_storage", **pbs())
    assert first["rc"] == 0, first["msg"]
    assert first["changed"] and first["actions"] == ["add pbs storage pbs-main (pbs.example.com:main)"]
    assert pve.pbs_config["pbs-main"]["fingerprint"] == FINGERPRINT.lower() and pve.pbs_config["pbs-main"]["content"] == "backup"
    assert pve.storage_secrets["pbs-main"] == {"password": PASSWORD, "encryption-key": KEY}
    assert ("pve2", "pbs-main") in pve.storages  # cluster-wide
    for result in (check, first):
        text = json.dumps(result)
        assert PASSWORD not in text and "c2VjcmV0LWtleS1tYXRlcmlhbC0xMjM0NTY3OA" not in text
        assert result["changes"]["password"]["after"] == "********"

    pve.reset_counters()
    # the same storage said differently: the fingerprint without separators; the secrets cannot be read back
    second = run_module("proxmox_storage", **pbs(fingerprint=FINGERPRINT.replace(":", "")))
    assert second["rc"] == 0, second["msg"]
    assert second["changed"] is False and [r for r in pve.requests if r[0] != "GET"] == []
    assert second["api_requests"] == 2  # GET /storage, GET /storage/pbs-main


def test_update_changes_only_differing_keys_and_rotates_secrets_on_request(pve, run_module):
    assert run_module("proxmox_storage", **pbs())["rc"] == 0
    pve.reset_counters()
    update = run_module("proxmox_storage", diff=True, **pbs(namespace="pve", enabled=False))
    assert update["rc"] == 0, update["msg"]
    assert set(update["diff"]["after"]) == {"namespace", "enabled"}
    assert pve.pbs_config["pbs-main"]["namespace"] == "pve" and pve.pbs_config["pbs-main"]["disable"] == "1"
    rotate = run_module("proxmox_storage", **pbs(namespace="pve", enabled=True, password="new-secret-value",
                                                 password_update="always"))
    assert rotate["changed"] and set(rotate["changes"]) == {"enabled", "password"}
    assert pve.storage_secrets["pbs-main"]["password"] == "new-secret-value"
    assert "disable" not in pve.pbs_config["pbs-main"]
    assert "new-secret-value" not in json.dumps(rotate)


def test_absent_other_types_and_bad_input(pve, run_module):
    refused = run_module("proxmox_storage", **pbs(storage="local-lvm"))
    assert refused["rc"] != 0 and "exists with type lvmthin, not pbs" in refused["msg"]
    bad = [
        (pbs(fingerprint="AA:BB"), "fingerprint: not a SHA-256 fingerprint"),
        (pbs(encryption_key="not json"), "encryption_key: not a PBS key file"),
        (pbs(datastore=None), "datastore: storage pbs-main does not exist; registering it needs these"),
        (pbs(storage="9bad"), "storage: '9bad' is not a storage ID"),
    ]
    for spec, expected in bad:
        result = run_module("proxmox_storage", **spec)
        assert result["rc"] != 0 and expected in result["msg"], result["msg"]
        assert PASSWORD not in json.dumps(result)
    assert "pbs-main" not in pve.pbs_config and [r for r in pve.requests if r[0] != "GET"] == []
    assert run_module("proxmox_storage", **pbs())["rc"] == 0
    gone = run_module("proxmox_storage", storage="pbs-main", state="absent")
    assert gone["changed"] and "pbs-main" not in pve.pbs_config and ("pve1", "pbs-main") not in pve.storages
    assert run_module("proxmox_storage", storage="pbs-main", state="absent")["changed"] is False


def test_the_double_rejects_pbs_parameters_like_pve(pve):
    from conftest import connection

    from ansible_collections.locus.infra.plugins.module_utils._proxmox import ProxmoxClient, ProxmoxError

    client = ProxmoxClient({**connection(pve), "api_retries": 0})
    try:
        client.request("POST", "storage", {"storage": "x1", "type": "pbs", "server": "pbs", "fingerprint": "zz"})
    except ProxmoxError as exc:
        assert exc.status == 400 and set(exc.errors) == {"fingerprint", "datastore", "username"}
    else:
        raise AssertionError("the double accepted a PBS storage without datastore and username")
    out = client.request("POST", "storage", {"storage": "x1", "type": "pbs", "server": "pbs", "datastore": "d",
                                             "username": "u@pbs", "fingerprint": FINGERPRINT, "encryption-key": "autogen"})
    assert "data" in out["config"]["encryption-key"] and "encryption-key" not in client.request("GET", "storage/x1")
