"""Planted secrets: a real ansible-playbook run with the audit callback, on both engines.

Secrets are planted in every form a user writes them (secret-named variables in many
spellings, vault-encrypted strings and files, extra vars, facts, registered results, no_log
options, credential-shaped values in plain variables) and reach the recorded channels: task
names, arguments, messages of failed tasks, fail/assert messages, ref_tag subjects and data,
uri bodies and headers, command lines. Each value carries a marker ``Zq<NN>``: no marker may
appear in the store, neither in the raw bytes of the SQLite files nor in any record.
"""

import json
import re
from pathlib import Path

import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from locus_testlib import raw_store_bytes, records_data, run_playbook

HERE = Path(__file__).parent / "playbooks"
INVENTORY = HERE / "inventory_callback.yml"
VAULT_PASSWORD = b"planted-vault-password"

# Secret-named variables (learnt by name; many spellings).
NAMED = {
    "db_password": "Zq01-dbpw-7fK2",
    "clientSecret": "Zq02-cs-9Hh3x",
    "PGPASSWORD": "Zq03-pg-Lm4q",
    "pwd": "Zq04pw",
    "x_api_key": "Zq05-xak-Uy6e",
    "short_bearer": "Zq06",
    "session_cookie": "Zq07-sid-Pp0o",
    "apiToken": "Zq08-at-Io7r",
    "authToken": "Zq09-aut-Kk8j",
    "aws_secret_access_key": "Zq10wJalrXUtnFEMI/K7MDENG/bPxRfiCY",
    "MYSQL_PWD": "Zq11-my-Hh2g",
    "refresh_token": "Zq12-rt-Gg3f",
    "webhookSecret": "Zq13-wh-Ff4d",
    "hmac_key": "Zq14-hm-Dd5s",
    "signing_key": "Zq15-sg-Ss6a",
    "encryption_key": "Zq16-en-Aa7q",
    "wifi_psk": "Zq17-psk-Qq8w",
    "otp_seed": "Zq18OTPSEEDBASE32",
    "ssh_passphrase": "Zq19 correct horse battery",
    "become_pass": "Zq20-bp-Ww9e",
    "license_key": "Zq21-lk-Ee0r",
    "config_requirepass": "Zq37-redis-Rr1t",
    "registered_password": "Zq36-reg-Tt2y",
}
EXTRA = {"deploy_token": "Zq22-deploy-Yy3u"}
# Values used in channels where only their shape or Ansible's knowledge can give them away.
CHANNEL = {
    "query_token": "Zq23qt",
    "json_client_secret": "Zq24-jcs",
    "json_password": "Zq25-jpw",
    "header_api_key": "Zq26-hak",
    "header_token": "Zq27hdrtoken",
    "cli_token": "Zq28-clitok",
    "cli_password": "Zq29-clipw",
    "conninfo_password": "Zq30-ci",
    "conninfo_quoted": "Zq31 a Zq31b",
    "env_pgpassword": "Zq32-envpg",
    "env_mysql_pwd": "Zq33-envmy",
    "nolog_content": "Zq34-content-line",
    "fact_source": "Zq35-fact-Uu4i",
}
VAULTED = {"motd_text": "Zq40-vaulted-motd", "banner_line": "Zq41-vaulted-banner"}
WHOLE_VAULT = {"backup_note": "Zq42-whole-file-vault"}
URLS = {
    "shaped_url_plain": "postgresql://app:Zq50pw@db.example:5432/app",
    "shaped_url_at": "postgresql://app:Zq51a@Zq51b@db.example/app",
    "shaped_url_slash": "https://user:Zq52a/Zq52b@127.0.0.1:1/file",
    "shaped_url_space": "mysql://user:Zq53a Zq53b@db.example/app",
    "shaped_url_user_empty": "redis://:Zq54pw@cache.example:6379/0",
}
# Credential-shaped text in a plain (not secret-named) variable: only the patterns can tell.
SHAPED = [
    "postgresql://app@db.example/app?sslmode=require&password=Zq55pw",
    "host=db password=Zq56pw dbname=app",
    "Authorization: Bearer Zq57",
    "Authorization: Token Zq58abcdef0123",
    "Authorization: Basic Zq59dXNlcjpwYXNz",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAZq60AAAA\nZq60BBBBBBB\n-----END OPENSSH PRIVATE KEY-----",
    "key sk-ant-api03-Zq61abcdefghijklmnop",
    "openai sk-proj-Zq62abcdefghijklmnopqrstu",
    "github ghp_Zq63abcdefghijklmnopqrstuvwxyz0123",
    "github_pat_Zq64abcdefghijklmnopqrstuvwxyz",
    "gitlab glpat-Zq65abcdefghijklmnop",
    "aws AKIAZQ66ABCDEFGHIJKL",
    "google AIzaZq67abcdefghijklmnopqrstuvwxyz01234",
    "slack xoxb-Zq68-123456789012-abcdef",
    "netbox nbt_Zq69abc.Zq69def",
    "k3s K100123456789abcdef0123456789abcdef0123456789abcdef::server:Zq70pw",
    "jwt eyJZq71aaaaaaaaa.eyJZq71bbbbbbbbb.Zq71ccccc",
    "proxmox PVEAPIToken=root@pam!ci=Zq72-1234",
    "stripe sk_live_Zq73abcdefghij",
    '{"password": "Zq74pw", "user": "bob"}',
    '{"clientSecret":"Zq75cs"}',
    "api_key: Zq76key",
    "export AWS_SECRET_ACCESS_KEY=Zq77key",
    "curl -H 'X-Api-Key: Zq78key' https://api.example",
    "password Zq79pw",
    "mytool --api-token Zq80tok",
    "Cookie: sessionid=Zq81sid",
    "https://Zq82abcdefghijklmnopqrst@github.com/org/repo.git",
    "ldap://cn=admin:Zq83pw@ldap.example",
    "amqp://guest:Zq84%40pw@mq.example/vhost",
    "DB_PASS=Zq85pw ./run",
    "passwd=Zq86pw",
    "client_secret=Zq87cs&grant_type=client_credentials",
    "<user>bob</user><password>Zq88pw</password>",
    "secret: 'Zq89 with spaces'",
    "token=Zq90",
    "Proxy-Authorization: Basic Zq91YWJjZGVm",
    "ssh://git:Zq92pw@host.example:22/repo",
    "PGPASSWORD='Zq93 pw' psql",
    "mongodb+srv://admin:Zq94pw@cluster0.example.net/test",
    "--password=Zq95pw",
    "X-Auth-Token: Zq96tok",
    "apikey=Zq97key",
    "bearer Zq98",
    "dsn: postgresql://:Zq99pw@/app?host=/run/postgresql",
    "user=app password=Zq100pw host=db",
    "MYSQL_PWD=Zq101pw mysql",
    "--client-secret Zq102cs",
    "redis-cli -a x --pass Zq103pw",
    "AccessKey: Zq104ak",
]
MARKER = re.compile(r"Zq\d+|ZQ\d+")


def _markers():
    values = [*NAMED.values(), *EXTRA.values(), *CHANNEL.values(), *VAULTED.values(), *WHOLE_VAULT.values(),
              *URLS.values(), *SHAPED]
    return {m for v in values for m in MARKER.findall(v)}


def _write_vars(tmp_path):
    vault = VaultLib([("default", VaultSecret(VAULT_PASSWORD))])
    (tmp_path / "vault-pass").write_bytes(VAULT_PASSWORD)
    (tmp_path / "named.yml").write_text(yaml.safe_dump({**NAMED, **CHANNEL}))
    (tmp_path / "shaped.yml").write_text(yaml.safe_dump({**URLS, "shaped_values": SHAPED}))
    vaulted = "\n".join(
        f"{name}: !vault |\n" + "\n".join("  " + line for line in vault.encrypt(value).decode().splitlines())
        for name, value in VAULTED.items()
    )
    (tmp_path / "vaulted.yml").write_text(vaulted + "\n")
    (tmp_path / "whole_vault.yml").write_bytes(vault.encrypt(yaml.safe_dump(WHOLE_VAULT)))


def test_no_planted_secret_reaches_the_store(store_env, open_test_store, tmp_path):
    planted = tmp_path / "planted"
    planted.mkdir()
    _write_vars(planted)
    markers = _markers()
    assert len(markers) >= 80  # the number of distinct planted secrets

    proc = run_playbook(
        HERE / "planted_secrets.yml", env=store_env, inventory=INVENTORY, check=False,
        args=["-e", f"planted_dir={planted}", "-e", json.dumps(EXTRA), "--vault-password-file", str(planted / "vault-pass")],
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # The secrets did flow through the run (the default stdout callback prints some of them).
    assert "Zq40-vaulted-motd" in proc.stdout and "Zq42-whole-file-vault" in proc.stdout

    store = open_test_store()
    recs = records_data(store)
    tasks = [d for t, d in recs if t.startswith("LOCUS-TASK")]
    assert len(tasks) == 18  # every task recorded, none dropped
    assert {d["status"] for d in tasks} >= {"ok", "failed"}
    assert any(t.startswith("LOCUS-DEPLOY") for t, _d in recs)
    assert store.verify()["ok"]

    everything = raw_store_bytes(store).decode("utf-8", "replace") + json.dumps([[r["subject"], r["data"]] for r in store.iter_records()], ensure_ascii=False)
    leaked = sorted(m for m in markers if m in everything)
    assert not leaked, f"{len(leaked)} of {len(markers)} planted secrets reached the store: {leaked}"
    # The records still say what happened, with the secrets masked in place.
    named_task = next(d for d in tasks if d["task"].startswith("Rotate credentials for"))
    assert named_task["task"] == "Rotate credentials for ******** and ********"
    uri = next(d for d in tasks if d["action"] == "ansible.builtin.uri")
    assert uri["status"] == "failed" and '"user": "bob"' in uri["args"]["body"]
