"""`locus mcp`'s inventory tools on the NetBox inventory plugin against the session's real NetBox 4.7:
the same hosts and groups as ansible-inventory gives, the NetBox token never in a result or the trail,
and a NetBox that refuses the token fails the call loudly instead of answering with an empty inventory."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import mcp_types
import yaml
from mcp import Client
from mcp.client.stdio import StdioServerParameters

REPO = Path(__file__).resolve().parents[3]
LOCUS = str(Path(sys.executable).with_name("locus"))


def _session(env, source, calls):
    async def run():
        server = StdioServerParameters(command=LOCUS, args=["mcp", "-i", str(source)], env=env, cwd=str(REPO))
        async with Client(server, client_info=mcp_types.Implementation(name="netbox-test", version="1"),
                          read_timeout_seconds=300) as client:
            return [await client.call_tool(name, args) for name, args in calls]

    return anyio.run(run)


def test_inventory_tools_read_the_netbox_plugin(netbox, default_inventory, tmp_path):
    config = yaml.safe_load((REPO / "inventory" / "netbox.yml").read_text())
    source = tmp_path / "mcp.netbox.yml"
    source.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUS_", "ANSIBLE_INVENTORY"))}
    env.update(LOCUS_STATE_DIR=str(tmp_path / "state"), NETBOX_API=netbox.url, NETBOX_TOKEN=netbox.token_v1,
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    host = sorted(netbox.lab_hosts)[0]
    hosts, one = _session(env, source, [("inventory_hosts", {"group": "routers", "limit": 1000}), ("inventory_host", {"name": host})])
    assert not hosts.is_error and not one.is_error, (hosts.structured_content, one.structured_content)
    want_routers = sorted(default_inventory.groups()["routers"])
    assert [h["name"] for h in hosts.structured_content["hosts"]] == want_routers
    got = one.structured_content
    want = default_inventory.hostvars[host]
    assert got["vars"]["ansible_host"] == want["ansible_host"] and got["vars"]["netbox_id"] == want["netbox_id"]
    assert set(got["vars"]) == set(want)
    text = json.dumps([hosts.structured_content, got])
    assert netbox.token_v1 not in text

    refused = _session({**env, "NETBOX_TOKEN": "0123456789" * 4}, source, [("inventory_hosts", {})])[0]
    assert refused.is_error and "inventory_hosts: the inventory" in refused.structured_content["error"]
    assert "403" in refused.structured_content["error"] or "401" in refused.structured_content["error"]
    from ansible_collections.locus.infra.plugins.plugin_utils.store import _store

    with _store.open_store(state_dir=env["LOCUS_STATE_DIR"]) as store:
        raw = json.dumps(list(store.iter_records()))
        assert store.verify()["ok"] and netbox.token_v1 not in raw and "0123456789" * 4 not in raw
        statuses = [json.loads(r["data"])["status"] for r in store.iter_records()]
    assert statuses == ["ok", "ok", "refused"]
