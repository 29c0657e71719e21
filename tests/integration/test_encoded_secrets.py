"""A secret Ansible knows (vaulted) must not reach the store encoded either: base64 (standard,
URL-safe, inside a larger blob at any byte offset) and hex, on both engines. A real
ansible-playbook run with the audit callback; the raw store bytes are searched."""

import base64
import json
from pathlib import Path

from ansible.parsing.vault import VaultLib, VaultSecret

from locus_testlib import raw_store_bytes, records_data, run_playbook

HERE = Path(__file__).parent / "playbooks"
VAULT_PASSWORD = b"encoded-vault-password"
SECRET = "R3d-Team>Plant?2026~x"  # '>', '?' and '~' give '+' and '/' in base64


def _cores(raw):
    """The base64 characters that depend on ``raw`` alone, at each byte offset in a larger blob."""
    out = []
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw + b"\0\0\0").decode()
        out.append(enc[-(-8 * k // 6):(8 * (k + len(raw))) // 6])
    return out


def test_encoded_forms_of_a_known_secret_are_masked(store_env, open_test_store, tmp_path):
    raw = SECRET.encode()
    forms = {
        "base64": base64.b64encode(raw).decode().rstrip("="),
        "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
    }
    forms.update({f"base64 at offset {k}": core for k, core in enumerate(_cores(raw))})
    assert "+" in forms["base64"] + forms["base64 at offset 1"] + forms["base64 at offset 2"]
    vault = VaultLib([("default", VaultSecret(VAULT_PASSWORD))])
    (tmp_path / "vault-pass").write_bytes(VAULT_PASSWORD)
    (tmp_path / "vaulted.yml").write_text(
        "registry_secret: !vault |\n" + "\n".join("  " + ln for ln in vault.encrypt(SECRET).decode().splitlines()) + "\n")

    proc = run_playbook(HERE / "encoded_secrets.yml", env=store_env, check=False,
                        args=["-e", f"planted_dir={tmp_path}", "--vault-password-file", str(tmp_path / "vault-pass")])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert forms["base64"] in proc.stdout  # the encoded secret did flow through the run

    store = open_test_store()
    tasks = [d for t, d in records_data(store) if t.startswith("LOCUS-TASK")]
    assert len(tasks) == 4 and store.verify()["ok"]
    everything = raw_store_bytes(store).decode("utf-8", "replace") + json.dumps(
        [[r["subject"], r["data"]] for r in store.iter_records()], ensure_ascii=False)
    leaked = sorted(name for name, form in forms.items() if form in everything)
    assert not leaked, f"the secret reached the store encoded as {leaked}"
    debug = next(d for d in tasks if d["action"] == "ansible.builtin.debug")
    assert debug["args"]["msg"].startswith("registry login ********")
