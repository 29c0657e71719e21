"""Role argument specs: every option whose name looks like a secret (the rule the audit trail uses)
says so explicitly - ``no_log: true`` for a secret, so Ansible masks it in validation errors and
results, or ``no_log: false`` for a name reviewed as harmless (as validate-modules asks of modules)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.locus.infra.plugins.plugin_utils import _redact

ROLES = Path(__file__).resolve().parents[2] / "roles"


def options(spec, where=""):
    for name, option in (spec or {}).items():
        yield f"{where}{name}", name, option
        yield from options(option.get("options"), f"{where}{name}.")


def secret_options():
    out = []
    for path in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        for entry, spec in yaml.safe_load(path.read_text())["argument_specs"].items():
            for dotted, name, option in options(spec.get("options")):
                if _redact.is_secret_key(name):
                    out.append((f"{path.parts[-3]}:{entry}:{dotted}", option))
    return out


def test_the_roles_have_secret_options_at_all():
    names = [where for where, _option in secret_options()]
    assert "proxmox_vm:main:proxmox_vm_api_token_secret" in names and "k3s:main:k3s_token" in names


@pytest.mark.parametrize(("where", "option"), secret_options(), ids=[w for w, _o in secret_options()])
def test_secret_looking_options_declare_no_log(where, option):
    assert option.get("no_log") in (True, False), f"{where}: a secret needs no_log: true (no_log: false if it is none)"


def test_the_known_secrets_are_no_log():
    declared = dict(secret_options())
    for where in ("proxmox_vm:main:proxmox_vm_api_token_secret", "proxmox_vm:main:proxmox_vm_api_password",
                  "k3s:main:k3s_token", "ollama:main:ollama_api_token", "ollama:main:ollama_basic_auth_users",
                  "bird2:main:bgp.neighbors.password", "bird2:main:bird2_passwords"):
        assert declared[where].get("no_log") is True, where
