"""Incremental refresh (refresh: incremental) against the real NetBox 4.7: always equal to a full build.

The property test applies random sequences of changes through NetBox's API and after every step
compares the inventory brought up to date from the snapshot with a full build of the same NetBox
state, and checks that changes local to hosts were applied incrementally and the others made a
full build. The other tests attack the snapshot and the change log: gaps, a pruned log, a token
with narrower permissions, a corrupt or foreign snapshot file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import netboxctl  # tests/netbox, put on sys.path by conftest.py
import pynetbox
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ansible_collections.locus.infra.plugins.plugin_utils.netbox._netbox_refresh import _auth_key

REFRESH = re.compile(r"locus\.infra\.netbox: refresh: (incremental|full)(?: \((.*)\))?, .*?(\d+) objects fetched")
PASSWORD = "A-long-test-password-4711"  # noqa: S105 - throw-away users of the test NetBox
EXAMPLES = int(os.environ.get("LOCUS_REFRESH_EXAMPLES", "3"))


def refresh_of(run):
    """("incremental"|"full", reason or None, objects fetched) from a run's -v output."""
    found = REFRESH.findall(run.stdout + run.stderr)
    assert len(found) == 1, run.stdout[-3000:] + run.stderr[-3000:]
    mode, reason, fetched = found[0]
    return mode, reason or None, int(fetched)


class Pair:
    """An inventory config run twice per step: incrementally from its own snapshot, and cold."""

    def __init__(self, run_inventory, tmp_path, name, config=None, token=None):
        self.run_inventory, self.config, self.token, self.name = run_inventory, dict(config or {}), token, name
        self.state = tmp_path / f"state-{name}"

    def incremental(self, *args):
        return self.run_inventory({**self.config, "state_dir": str(self.state)}, "-v", *args, token=self.token,
                                  name=f"{self.name}-inc")

    def cold(self):
        return self.run_inventory({**self.config, "refresh": "full"}, token=self.token, name=f"{self.name}-cold")

    def both(self):
        with ThreadPoolExecutor(max_workers=2) as pool:
            inc, cold = pool.submit(self.incremental), pool.submit(self.cold)
            inc, cold = inc.result(), cold.result()
        assert inc.rc == 0, inc.stderr
        assert cold.rc == 0, cold.stderr
        return inc, cold


class World:
    """Objects of the property test in the session's NetBox; every one is removed afterwards."""

    def __init__(self, api):
        self.api = api
        self.created = []  # deleted in reverse order
        self.n = 0
        ctype = api.virtualization.cluster_types.get(slug="proxmox")
        node = api.dcim.devices.get(name="pve1")
        self.device_type, self.device_role = node.device_type.id, node.role.id
        self.vm_roles = [api.dcim.device_roles.get(slug=s).id for s in ("web", "router")]
        self.sites = [self.make(api.dcim.sites, name=f"Prop {x}", slug=f"prop-{x}") for x in "ab"]
        self.clusters = [self.make(api.virtualization.clusters, name=f"prop-c{i}", type=ctype.id,
                                   scope_type="dcim.site", scope_id=site.id) for i, site in enumerate(self.sites)]
        self.tags = [self.make(api.extras.tags, name=f"prop-t{i}", slug=f"prop-t{i}") for i in range(2)]
        self.context = self.make(api.extras.config_contexts, name="prop-ctx", weight=1500,
                                 sites=[self.sites[0].id], data={"prop_setting": 0})
        self.field = self.make(api.extras.custom_fields, name="prop_note", type="text",
                               object_types=["virtualization.virtualmachine"], description="v0")
        self.devices = [self.new_device(0)]
        self.vms = [self.new_vm(i % 2, device=self.devices[0] if i == 0 else None) for i in range(3)]

    def make(self, endpoint, **fields):
        obj = endpoint.create(**fields)
        self.created.append(obj)
        return obj

    def name(self, what):
        self.n += 1
        return f"prop-{what}-{self.n}"

    def new_device(self, s):
        device = self.make(self.api.dcim.devices, name=self.name("dev"), device_type=self.device_type,
                           role=self.device_role, site=self.sites[s].id, cluster=self.clusters[s].id,
                           status="active")
        iface = self.make(self.api.dcim.interfaces, device=device.id, name="eth0", type="1000base-t")
        ip = self.make(self.api.ipam.ip_addresses, address=f"10.99.{self.n % 250}.1/24",
                       assigned_object_type="dcim.interface", assigned_object_id=iface.id)
        device.primary_ip4 = ip.id
        device.save()
        return device

    def new_vm(self, c, device=None):
        vm = self.make(self.api.virtualization.virtual_machines, name=self.name("vm"), site=self.sites[c].id,
                       cluster=self.clusters[c].id, role=self.vm_roles[self.n % 2], status="active",
                       device=device.id if device else None, vcpus=2, memory=2048,
                       custom_fields={"locus_vmid": 9000 + self.n})
        iface = self.make(self.api.virtualization.interfaces, virtual_machine=vm.id, name="net0")
        vm.primary_ip4 = self.new_ip(iface).id
        vm.save()
        return vm

    def new_ip(self, iface):
        self.n += 1
        return self.make(self.api.ipam.ip_addresses, address=f"10.98.{self.n // 250}.{self.n % 250 + 1}/24",
                         assigned_object_type="virtualization.vminterface", assigned_object_id=iface.id)

    def cleanup(self):
        # VMs and devices first (whatever their names became), then the rest, newest first
        hosts = [*self.api.virtualization.virtual_machines.filter(cluster_id=[c.id for c in self.clusters]),
                 *self.api.dcim.devices.filter(site_id=[s.id for s in self.sites])]
        errors = []
        for obj in [*hosts, *reversed(self.created)]:
            try:
                obj.delete()
            except pynetbox.RequestError as exc:
                if exc.req.status_code != 404:  # gone with its parent (interfaces, addresses) is fine
                    errors.append(f"{obj}: {exc}")
        assert not errors, errors

    # ------------------------------------------------------------------ the operations
    # Each takes a number to pick its target and returns the build the next run must make.

    def pick(self, objs, k):
        live = [o for o in objs if o is not None]
        return live[k % len(live)] if live else None

    def create_vm(self, k):
        self.vms.append(self.new_vm(k % 2))
        return "incremental"

    def rename_vm(self, k):
        vm = self.pick(self.vms, k)
        if vm is None:
            return self.create_vm(k)
        vm.name = self.name("vm")
        vm.save()
        return "incremental"

    def delete_vm(self, k):
        vm = self.pick(self.vms, k)
        if vm is None:
            return self.create_vm(k)
        vm.delete()  # its interfaces and addresses go with it (and are logged)
        self.vms[self.vms.index(vm)] = None
        return "incremental"

    def create_device(self, k):
        self.devices.append(self.new_device(k % 2))
        return "incremental"

    def rename_device(self, k):
        device = self.pick(self.devices, k)
        if device is None:
            return self.create_device(k)
        device.name = self.name("dev")  # VMs pinned to it show its new name
        device.save()
        return "incremental"

    def delete_device(self, k):
        device = self.pick(self.devices, k)
        if device is None:
            return self.create_device(k)
        for vm in self.api.virtualization.virtual_machines.filter(device_id=device.id):
            vm.update({"device": None})  # NetBox refuses to delete a device with VMs pinned to it
        device.delete()
        self.devices[self.devices.index(device)] = None
        return "incremental"

    def change_primary_ip(self, k):
        vm = self.pick(self.vms, k)
        if vm is None:
            return self.create_vm(k)
        vm = self.api.virtualization.virtual_machines.get(vm.id)
        iface = next(iter(self.api.virtualization.interfaces.filter(virtual_machine_id=vm.id)))
        vm.primary_ip4 = self.new_ip(iface).id
        vm.save()
        return "incremental"

    def edit_primary_ip(self, k):
        vm = self.pick(self.vms, k)
        vm = vm and self.api.virtualization.virtual_machines.get(vm.id)
        if vm is None or vm.primary_ip4 is None:
            return self.change_primary_ip(k)
        ip = self.api.ipam.ip_addresses.get(vm.primary_ip4.id)
        self.n += 1
        ip.address = f"10.97.{self.n // 250}.{self.n % 250 + 1}/24"  # only the address object changes
        ip.save()
        return "incremental"

    def delete_primary_ip(self, k):
        vm = self.pick(self.vms, k)
        vm = vm and self.api.virtualization.virtual_machines.get(vm.id)
        if vm is None or vm.primary_ip4 is None:
            return self.change_primary_ip(k)
        self.api.ipam.ip_addresses.get(vm.primary_ip4.id).delete()  # NetBox nulls primary_ip4 unlogged
        return "incremental"

    def move_vm(self, k):
        vm = self.pick(self.vms, k)
        if vm is None:
            return self.create_vm(k)
        vm = self.api.virtualization.virtual_machines.get(vm.id)
        c = 1 - [c.id for c in self.clusters].index(vm.cluster.id)
        vm.update({"cluster": self.clusters[c].id, "site": self.sites[c].id, "device": None})
        return "incremental"

    def tag_vm(self, k):
        vm = self.pick(self.vms, k)
        if vm is None:
            return self.create_vm(k)
        vm = self.api.virtualization.virtual_machines.get(vm.id)
        tag = self.tags[k % 2].id
        tags = [t.id for t in vm.tags]
        vm.update({"tags": [t for t in tags if t != tag] if tag in tags else [*tags, tag]})
        return "incremental"

    def edit_custom_field_value(self, k):
        vm = self.pick(self.vms, k)
        if vm is None:
            return self.create_vm(k)
        vm = self.api.virtualization.virtual_machines.get(vm.id)
        vm.update({"custom_fields": {"locus_vmid": 20000 + k, "prop_note": f"note {k}"}})
        return "incremental"

    def edit_config_context(self, k):
        self.context.data = {"prop_setting": k, "prop_list": list(range(k % 3))}
        self.context.save()
        return "full"

    def edit_custom_field(self, k):
        self.field.description = f"v{k}"
        self.field.save()
        return "full"

    def change_site(self, k):
        site = self.sites[k % 2]
        site.description = f"edited {k}"
        site.save()
        return "full"


OPERATIONS = [name for name in vars(World) if not name.startswith(("_", "new_", "make", "name", "pick", "cleanup"))]


@pytest.fixture(scope="module")
def world(netbox):
    world = World(netbox.api())
    try:
        yield world
    finally:
        world.cleanup()


@pytest.fixture(scope="module")
def pairs(run_inventory, tmp_path_factory, world):
    tmp = tmp_path_factory.mktemp("refresh")
    both = [Pair(run_inventory, tmp, "all"), Pair(run_inventory, tmp, "site-a", {"filters": {"site": ["prop-a"]}})]
    for pair in both:  # the first build of each is full and writes the snapshot
        first, cold = pair.both()
        assert refresh_of(first)[0] == "full"
        assert first.data == cold.data
    return both


def only_site(run, site):
    """The --list data of ``run`` restricted to the hosts of one site (what filters: {site: [site]} gives)."""
    keep = {h for h, hv in run.hostvars.items() if hv["site"] == site}
    data = {"_meta": {"hostvars": {h: run.hostvars[h] for h in keep}}}
    for group, members in run.data.items():
        if group == "_meta":
            continue
        hosts = [h for h in members.get("hosts", []) if h in keep]
        if hosts:
            data[group] = {**members, "hosts": hosts}
    return data


# No shrinking: every step costs seconds of NetBox; a failure names its operations as they ran.
@settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 999)), min_size=2, max_size=4))
def test_incremental_equals_a_full_build_after_every_change(world, pairs, steps):
    everything, site_a = pairs
    for op, k in steps:
        expected = getattr(world, op)(k)
        with ThreadPoolExecutor(max_workers=3) as pool:  # one full build serves both incremental ones
            runs = [pool.submit(everything.incremental), pool.submit(site_a.incremental), pool.submit(everything.cold)]
            inc, inc_a, cold = (f.result() for f in runs)
        for run in (inc, inc_a, cold):
            assert run.rc == 0, run.stderr
        assert inc.data == cold.data, op
        assert only_site(inc_a, "prop-a") == only_site(cold, "prop-a") and set(inc_a.hostvars) == {
            h for h, hv in cold.hostvars.items() if hv["site"] == "prop-a"}, op
        for run in (inc, inc_a):
            mode, reason, _fetched = refresh_of(run)
            if expected == "incremental":
                assert mode == "incremental", (op, reason)
            else:
                assert mode == "full" and "is not local to one host" in reason, (op, reason)


def test_unchanged_netbox_fetches_nothing_and_a_local_change_only_its_host(world, pairs):
    pair = pairs[0]
    inc, cold = pair.both()  # whatever the property test left, now in the snapshot
    inc, cold = pair.both()
    assert refresh_of(inc) == ("incremental", None, 0)
    assert inc.data == cold.data
    world.rename_vm(1)
    inc, cold = pair.both()
    assert refresh_of(inc) == ("incremental", None, 1)
    assert inc.data == cold.data
    out = inc.stdout + inc.stderr
    assert re.search(r"virtualization/virtual-machines: 2 requests", out), out  # the count and the one VM
    assert "extras/tagged-objects" not in out


def test_snapshot_files_are_private_and_hold_no_token(netbox, pairs):
    files = list(pairs[0].state.joinpath("netbox").iterdir())
    assert len(files) == 1
    assert stat.S_IMODE(pairs[0].state.joinpath("netbox").stat().st_mode) == 0o700
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    blob = files[0].read_bytes()
    for secret in (netbox.token_v1, netbox.token_v2.split(".", 1)[1]):
        assert secret.encode() not in blob


def corrupt_cases(blob):
    header, _sep, body = blob.partition(b"\n")
    tampered = body.replace(b'"name":"web1"', b'"name":"evil1"', 1)
    assert tampered != body
    return {
        "garbage": b"\xff\xfe not a snapshot \x00",
        "truncated": blob[: len(blob) // 2],
        "tampered body": header + b"\n" + tampered,
        "empty": b"",
    }


def test_corrupt_or_tampered_snapshot_means_a_full_build(pairs):
    pair = pairs[0]
    path = next(pair.state.joinpath("netbox").iterdir())
    good = path.read_bytes()
    for case, blob in corrupt_cases(good).items():
        path.write_bytes(blob)
        inc, cold = pair.both()
        mode, reason, fetched = refresh_of(inc)
        assert mode == "full" and fetched > 0, case
        assert "corrupt" in reason or "does not verify" in reason, (case, reason)
        assert inc.data == cold.data, case
        assert "evil1" not in inc.stdout
    # a snapshot that others may write is not trusted either
    path.chmod(0o644)
    inc, _cold = pair.both()
    assert refresh_of(inc)[0] == "full" and "not a private file" in refresh_of(inc)[1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # replaced by a private one


def test_snapshot_of_another_token_is_never_used(netbox, run_inventory, tmp_path):
    """A token that may see less must not get the data of one that sees more, even from a planted file."""
    api = netbox.api()
    user = api.users.users.create(username="refresh-narrow", password=PASSWORD)
    perms = []
    try:
        perms.append(api.users.permissions.create(
            name="refresh-narrow: VMs of dc1, change log", actions=["view"], users=[user.id],
            object_types=["virtualization.virtualmachine"], constraints={"site__slug": "dc1"}))
        perms.append(api.users.permissions.create(
            name="refresh-narrow: change log, tags, custom fields", actions=["view"], users=[user.id],
            object_types=["core.objectchange", "extras.customfield", "extras.tag", "extras.taggeditem"]))
        narrow = api.users.tokens.create(user=user.id, version=1, write_enabled=False).token
        config = {"devices": False}
        admin = Pair(run_inventory, tmp_path, "admin", config)
        mine = Pair(run_inventory, tmp_path, "narrow", config, token=narrow)
        full = admin.both()[0]
        narrow_run, narrow_cold = mine.both()
        assert set(narrow_run.hostvars) < set(full.hostvars)
        assert {hv["site"] for hv in narrow_run.hostvars.values()} == {"dc1"}
        # plant the admin's snapshot where the narrow token's would be
        theirs = next(admin.state.joinpath("netbox").iterdir())
        ours = next(mine.state.joinpath("netbox").iterdir())
        shutil.copyfile(theirs, ours)
        inc, cold = mine.both()
        mode, reason, _fetched = refresh_of(inc)
        assert mode == "full" and "does not verify" in reason, reason
        assert inc.data == cold.data == narrow_cold.data
        # the same token's permission narrowed later (permission changes are not in the change log)
        assert refresh_of(mine.incremental())[0] == "incremental"
        perms[0].constraints = {"site__slug": "dc1", "role__slug": "web"}
        perms[0].save()
        inc, cold = mine.both()
        mode, reason, _fetched = refresh_of(inc)
        assert mode == "full" and "NetBox shows this token" in reason, reason
        assert inc.data == cold.data and set(inc.hostvars) < set(narrow_cold.hostvars)
    finally:
        for perm in perms:
            perm.delete()
        user.delete()


def test_change_log_hidden_by_a_constraint_or_forbidden_means_full_builds(netbox, run_inventory, tmp_path, world):
    api = netbox.api()
    user = api.users.users.create(username="refresh-partial-log", password=PASSWORD)
    perms = []
    try:
        perms.append(api.users.permissions.create(
            name="refresh-partial-log: objects", actions=["view"], users=[user.id],
            object_types=["virtualization.virtualmachine", "dcim.device", "extras.customfield", "extras.tag",
                          "extras.taggeditem"]))
        # this token sees the change log of IP addresses only: VM changes are gaps in the ids
        perms.append(api.users.permissions.create(
            name="refresh-partial-log: changes of addresses", actions=["view"], users=[user.id],
            object_types=["core.objectchange"], constraints={"changed_object_type__model": "ipaddress"}))
        token = api.users.tokens.create(user=user.id, version=1, write_enabled=False).token
        pair = Pair(run_inventory, tmp_path, "partial", token=token)
        pair.both()
        world.change_primary_ip(3)  # an IP change (visible) and a VM change (hidden)
        inc, cold = pair.both()
        mode, reason, _fetched = refresh_of(inc)
        assert mode == "full" and "are not visible to this token" in reason, reason
        assert inc.data == cold.data
        # no view of the change log at all: every build is full, no snapshot is kept
        perms[1].delete()
        perms.pop()
        forbidden = Pair(run_inventory, tmp_path, "forbidden", token=token)
        for _run in range(2):
            inc, cold = forbidden.both()
            mode, reason, _fetched = refresh_of(inc)
            assert mode == "full" and inc.data == cold.data
        assert "no snapshot yet" in reason
        assert re.search(r"no snapshot kept: changes unreadable \(.*core/object-changes \(HTTP 403", inc.stdout), \
            inc.stdout[-2000:]
    finally:
        for perm in perms:
            perm.delete()
        user.delete()


def psql(netbox, sql):
    inst = netboxctl.Instance(Path(netbox.env["state_dir"]), netbox.env["port"])
    netboxctl._psql(inst, sql, db="netbox")  # noqa: SLF001 - the fixture's own psql


def test_gap_in_the_change_log_means_full_builds_until_it_is_settled(netbox, pairs, world):
    """An id missing between visible ones (a change hidden, rolled back or not committed yet): full builds,
    also the one after (the gap is younger than 10 minutes), never the stale snapshot."""
    pair = pairs[0]
    pair.both()
    world.rename_vm(4)
    world.rename_vm(5)
    psql(netbox, "DELETE FROM core_objectchange WHERE id = (SELECT max(id) - 1 FROM core_objectchange)")
    for _run in range(2):
        inc, cold = pair.both()
        mode, reason, _fetched = refresh_of(inc)
        assert mode == "full" and re.search(r"change-log ids \d+ are not visible to this token", reason), reason
        assert inc.data == cold.data


def test_netbox_upgrade_means_a_full_build(netbox, pairs):
    """A snapshot that verifies (HMAC keyed by this token) but was written by another NetBox version."""
    pair = pairs[0]
    pair.both()
    path = next(pair.state.joinpath("netbox").iterdir())
    header, body = path.read_bytes().split(b"\n", 1)
    snapshot = json.loads(body)
    snapshot["netbox_version"] = "4.6.9"
    body = json.dumps(snapshot).encode()
    mac = hmac.new(_auth_key(f"Token {netbox.token_v1}"), body, hashlib.sha256).hexdigest().encode()
    path.write_bytes(header.split(b" ")[0] + b" " + mac + b"\n" + body)
    inc, cold = pair.both()
    assert refresh_of(inc)[:2] == ("full", f"NetBox was 4.6.9, is {netbox.env['netbox_version']}")
    assert inc.data == cold.data


def test_pruned_change_log_means_a_full_build(netbox, pairs, world):
    """Retention (or a cleared log) removed the high-water mark: the snapshot cannot be trusted."""
    pair = pairs[0]
    pair.both()
    psql(netbox, "DELETE FROM core_objectchange")  # what housekeeping does past CHANGELOG_RETENTION days
    world.rename_vm(2)
    inc, cold = pair.both()
    mode, reason, _fetched = refresh_of(inc)
    assert mode == "full" and "no longer holds change" in reason, reason
    assert inc.data == cold.data


def read_snapshot(path):
    return json.loads(path.read_bytes().split(b"\n", 1)[1])


def write_signed(path, snapshot, token):
    """What only the holder of ``token`` can write: a snapshot with a valid HMAC."""
    body = json.dumps(snapshot).encode()
    mac = hmac.new(_auth_key(f"Token {token}"), body, hashlib.sha256).hexdigest().encode()
    path.write_bytes(b"locus-netbox-snapshot " + mac + b"\n" + body)


def test_snapshot_older_than_max_snapshot_age_means_a_full_build(netbox, pairs, world):
    """The age is the snapshot's own record of its full build (NetBox's clock), moved back instead of waiting."""
    pair = pairs[0]
    pair.both()
    path = next(pair.state.joinpath("netbox").iterdir())
    snapshot = read_snapshot(path)
    built = datetime.fromisoformat(snapshot["built"])
    assert abs(datetime.now(timezone.utc) - built) < timedelta(minutes=10), built  # NetBox's time of that build
    # incremental builds keep the time of the full build: they do not make the snapshot younger
    world.rename_vm(6)
    inc, cold = pair.both()
    assert refresh_of(inc)[0] == "incremental" and inc.data == cold.data
    assert read_snapshot(path)["built"] == snapshot["built"]

    # a changed time in the file that is not signed with the token is not believed: the HMAC fails
    snapshot = read_snapshot(path)
    header, body = path.read_bytes().split(b"\n", 1)
    young = (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat()
    forged = body.replace(f'"built":"{snapshot["built"]}"'.encode(), f'"built":"{young}"'.encode(), 1)
    assert forged != body
    path.write_bytes(header + b"\n" + forged)
    inc, cold = pair.both()
    mode, reason, _fetched = refresh_of(inc)
    assert mode == "full" and "does not verify" in reason, reason
    assert inc.data == cold.data

    # a validly signed snapshot 2 h old (default max_snapshot_age 3600 s), and one dated after NetBox's clock
    for when, why in ((timedelta(hours=-2), r"full build is 2 h 0 min old, more than max_snapshot_age 3600 s"),
                      (timedelta(days=1), r"full build is dated .*, after NetBox's time")):
        snapshot = read_snapshot(path)
        snapshot["built"] = (datetime.fromisoformat(snapshot["built"]) + when).isoformat()
        write_signed(path, snapshot, netbox.token_v1)
        world.rename_vm(7)  # a change the full build must show
        inc, cold = pair.both()
        mode, reason, fetched = refresh_of(inc)
        assert mode == "full" and re.search(why, reason) and fetched > 1, reason
        assert inc.data == cold.data
        assert refresh_of(pair.incremental())[0] == "incremental"  # the new snapshot is young again

    # the same old snapshot is used with a larger maximum age, and with none (0)
    for max_age in (3 * 3600, 0):
        snapshot = read_snapshot(path)
        snapshot["built"] = (datetime.fromisoformat(snapshot["built"]) - timedelta(hours=2)).isoformat()
        write_signed(path, snapshot, netbox.token_v1)
        relaxed = Pair(pair.run_inventory, pair.state.parent, pair.name, {"max_snapshot_age": max_age})
        relaxed.state = pair.state
        assert refresh_of(relaxed.incremental()) == ("incremental", None, 0), max_age


def test_max_snapshot_age_must_be_a_number_of_seconds(run_inventory):
    for value in (-1, 10**18, "an hour"):
        run = run_inventory({"max_snapshot_age": value})
        assert run.rc != 0
        assert "max_snapshot_age" in run.stderr, run.stderr


def test_full_build_reads_a_short_change_tail_unless_the_log_is_busy(netbox, run_inventory, pairs, tmp_path, world):
    """A full build anchors on the newest 100 changes when one of them is older than the overlap (10 minutes),
    and reads the newest 1000 only when all 100 are younger; either way the anchor lets the next build be
    incremental and equal to a full one."""
    def anchored(name):
        run = run_inventory({"refresh": "full", "state_dir": str(tmp_path / name)}, "-v", name=name)
        assert run.rc == 0, run.stderr
        requests = re.search(r"core/object-changes: (\d+) requests", run.stdout)
        return int(requests.group(1)), read_snapshot(next((tmp_path / name / "netbox").iterdir()))

    api = netbox.api()
    # 202 fresh changes (two bulk requests): the newest 100 are all younger than 10 minutes
    tags = api.extras.tags.create([{"name": f"tail-{i}", "slug": f"tail-{i}"} for i in range(101)])
    api.extras.tags.delete(tags)
    newest = [c["id"] for c in api.http_session.get(
        f"{netbox.url}/api/core/object-changes/", params={"ordering": "-id", "limit": 4, "fields": "id"},
        headers={"Authorization": f"Token {netbox.token_v1}"}, timeout=30).json()["results"]]
    assert len(newest) == 4
    n_requests, snapshot = anchored("busy")
    assert n_requests == 2 and snapshot["hwm"]["id"] == newest[0]
    # all but the newest 3 changes an hour older: the first 100 reach back past the overlap
    psql(netbox, f"UPDATE core_objectchange SET time = time - interval '1 hour' WHERE id <= {newest[3]}")
    n_requests, snapshot = anchored("quiet")
    assert n_requests == 1
    assert snapshot["settled"] == newest[3] and sorted(snapshot["seen"]) == sorted(newest[:3])
    world.rename_vm(9)
    pair = Pair(run_inventory, tmp_path, "quiet")
    pair.state = tmp_path / "quiet"
    inc, cold = pair.both()
    assert refresh_of(inc)[:2] == ("incremental", None) and inc.data == cold.data
