"""Normalisation of Proxmox config values: what makes a second run report no change."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from ansible_collections.locus.infra.plugins.module_utils import _proxmox_config as cfg

ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop"
RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7+/= bob@host"


@pytest.mark.parametrize(
    "stored",
    [
        quote(ED + "\n" + RSA, safe=""),  # PVE GUI / our encoding
        quote(ED + "\n" + RSA + "\n", safe=""),  # trailing newline
        quote(RSA + "\n" + ED, safe=""),  # other order
        ED.replace(" ", "%20") + "%0A" + RSA.replace(" ", "%20").replace("+", "%2B").replace("/", "%2F").replace("=", "%3D"),
        quote(ED + "\n\n" + RSA, safe="/+="),  # a client that leaves /+= alone
        ED + "\n" + RSA,  # plain (as a user writes it)
        [RSA, "  " + ED.replace(" ", "   ") + "  "],  # list, odd whitespace
    ],
)
def test_ssh_keys_compare_equal_however_encoded(stored):
    assert cfg.normalise_ssh_keys(stored) == sorted([ED, RSA])


def test_ssh_keys_encoding_round_trips_and_is_pve_urlencoded():
    encoded = cfg.encode_ssh_keys(sorted([ED, RSA]))
    # PVE's 'urlencoded' format: only unreserved characters and %XX escapes
    assert all(c.isalnum() or c in "-%_.!~*'()" for c in encoded)
    assert cfg.normalise_ssh_keys(encoded) == sorted([ED, RSA])


def test_ssh_keys_that_differ_are_not_equal():
    assert cfg.normalise_ssh_keys(quote(ED, safe="")) != cfg.normalise_ssh_keys([ED, RSA])


def test_check_ssh_keys_names_the_bad_key():
    with pytest.raises(cfg.ConfigValueError, match="not an SSH public key: 'hello world'"):
        cfg.check_ssh_keys(["hello world"])


@pytest.mark.parametrize(("value", "expected"), [(1, True), ("1", True), (0, False), ("0", False), (True, True),
                                                 ("yes", True), ("off", False), (None, None)])
def test_pve_bool(value, expected):
    assert cfg.pve_bool(value) is expected


def test_pve_bool_rejects_garbage():
    with pytest.raises(cfg.ConfigValueError, match="not a boolean: 'maybe'"):
        cfg.pve_bool("maybe")


@pytest.mark.parametrize(("value", "mib"), [(2048, 2048), ("2048", 2048), ("current=2048", 2048),
                                            ("current=4096,foo=1", 4096)])
def test_memory_forms(value, mib):
    assert cfg.memory_mib(value) == mib


@pytest.mark.parametrize(
    ("value", "unit", "size"),
    [(32, "G", 32 * cfg.GIB), ("32G", "G", 32 * cfg.GIB), ("32768M", "G", 32 * cfg.GIB), ("1T", "G", cfg.TIB),
     ("1.5G", "G", int(1.5 * cfg.GIB)), ("4194304", "", 4194304), ("512 MiB", "G", 512 * cfg.MIB)],
)
def test_sizes(value, unit, size):
    assert cfg.parse_size(value, default_unit=unit) == size


@pytest.mark.parametrize(("size", "text"), [(32 * cfg.GIB, "32G"), (32 * cfg.GIB + cfg.MIB, "32769M"),
                                            (cfg.TIB, "1T"), (4 * cfg.MIB, "4M"), (1000, "1000")])
def test_format_size_like_pve(size, text):
    assert cfg.format_size(size) == text


def test_bad_size_is_an_error_with_a_hint():
    with pytest.raises(cfg.ConfigValueError, match="use e.g. 32, '32G'"):
        cfg.parse_size("big")


def test_drive_size_reads_pve_sizes():
    assert cfg.drive_size("local-lvm:vm-101-disk-0,iothread=1,size=32G") == 32 * cfg.GIB
    assert cfg.drive_size("local-lvm:vm-101-disk-0,size=4194304") == 4194304
    assert cfg.drive_is_cloudinit("local-lvm:vm-101-cloudinit,media=cdrom")
    assert not cfg.drive_is_cloudinit("local-lvm:vm-101-disk-0,size=4G")
    assert cfg.drive_is_cdrom("none,media=cdrom")


def test_net_keeps_generated_mac_and_unmanaged_keys():
    current = cfg.parse_net("virtio=bc:24:11:aa:bb:cc,bridge=vmbr0,firewall=1,queues=4")
    desired = cfg.desired_net({"bridge": "vmbr0", "vlan": 20, "model": "virtio"})
    merged = cfg.merge_net(current, desired)
    assert cfg.print_net(merged) == "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1,queues=4,tag=20"
    assert not cfg.net_equal(current, merged)
    # after PVE stored it, the same desired state compares equal
    stored = cfg.parse_net(cfg.print_net(merged))
    assert cfg.net_equal(stored, cfg.merge_net(stored, desired))


def test_net_equal_ignores_boolean_and_case_forms():
    a = cfg.parse_net("virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=0,tag=020")
    b = cfg.parse_net("model=virtio,macaddr=bc:24:11:aa:bb:cc,bridge=vmbr0,tag=20")
    assert cfg.net_equal(a, b)


def test_net_untagged_removes_tag():
    current = cfg.parse_net("virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,tag=20")
    merged = cfg.merge_net(current, cfg.desired_net({"bridge": "vmbr0", "model": "virtio"}))
    assert "tag" not in merged


def test_net_rejects_multicast_mac():
    with pytest.raises(cfg.ConfigValueError, match="multicast"):
        cfg.desired_net({"bridge": "vmbr0", "mac": "01:00:5e:00:00:01"})


def test_tags_compare_as_case_insensitive_set():
    assert cfg.tags_equal("Prod;web", ["web", "prod"])
    assert cfg.tags_equal("web,prod web", ["prod", "web"])
    assert not cfg.tags_equal("web", ["web", "prod"])
    assert cfg.normalise_tags(["a", "A", "b"]) == ["a", "b"]


def test_bad_tag_is_named():
    with pytest.raises(cfg.ConfigValueError, match="'bad tag!'"):
        cfg.check_tags(["ok", "bad tag!"])


def test_ipconfig_canonical_forms():
    assert cfg.normalise_ipconfig("gw=10.0.0.1,ip=10.0.0.5/24") == {"ip": "10.0.0.5/24", "gw": "10.0.0.1"}
    assert cfg.normalise_ipconfig({"ip6": "2001:DB8:0:0::5/64", "ip": "dhcp"}) == {"ip6": "2001:db8::5/64", "ip": "dhcp"}
    assert cfg.print_ipconfig(cfg.normalise_ipconfig({"gw": "10.0.0.1", "ip": "10.0.0.5/24"})) == \
        "ip=10.0.0.5/24,gw=10.0.0.1"
    assert cfg.ipconfig_address("ip=10.0.0.5/24,gw=10.0.0.1") == "10.0.0.5"
    assert cfg.ipconfig_address("ip=dhcp") is None


def test_ipconfig_errors_name_the_key():
    with pytest.raises(cfg.ConfigValueError, match="ip='10.0.0.5' is not an address with prefix length"):
        cfg.normalise_ipconfig("ip=10.0.0.5")
    with pytest.raises(cfg.ConfigValueError, match="unknown ipconfig key 'dns'"):
        cfg.normalise_ipconfig("ip=dhcp,dns=1.1.1.1")


def test_description_ref_tag_line():
    text = cfg.join_ref("Web server\nfor the lab  \n", "LOCUS-DEPLOY20250908-001")
    assert text == "Web server\nfor the lab\n\nlocus-ref: LOCUS-DEPLOY20250908-001"
    assert cfg.split_ref(text + "\n\n") == ("Web server\nfor the lab", "LOCUS-DEPLOY20250908-001")
    assert cfg.split_ref("just text") == ("just text", None)
    assert cfg.join_ref("", "LOCUS-DEPLOY20250908-002") == "locus-ref: LOCUS-DEPLOY20250908-002"


def test_cpu_and_agent_keep_other_settings():
    assert cfg.cpu_type("cputype=host,flags=+aes") == "host"
    assert cfg.set_cpu_type("host,flags=+aes", "x86-64-v3") == "x86-64-v3,flags=+aes"
    assert cfg.agent_enabled("enabled=1,fstrim_cloned_disks=1") is True
    assert cfg.agent_enabled("0") is False
    assert cfg.set_agent_enabled("1,fstrim_cloned_disks=1", False) == "0,fstrim_cloned_disks=1"
    assert cfg.set_agent_enabled(None, True) == "1"


def test_display_hides_password_and_decodes_keys():
    assert cfg.display_value("cipassword", "**********") == "********"
    assert cfg.display_value("sshkeys", quote(ED, safe="")) == [ED]
    assert cfg.display_value("onboot", 1) is True
