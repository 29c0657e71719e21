"""locus.infra.bird2's data model (_bird_model and the bird2_* filters) without a host.

The expected problem messages are the ones the role's Jinja checks (validate.j2, removed when
the model moved to Python) produced for the same data - collected by rendering that template
over this table - so users see the same messages as before.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.locus.infra.plugins.callback import changes as changes_callback
from ansible_collections.locus.infra.plugins.filter import bird as bird_filter
from ansible_collections.locus.infra.plugins.module_utils import _bird_model as model

DEFAULTS = {"passwords": {}, "confirm_sessions": "established", "confirm_wait": 60, "configure_timeout": 180}
LAB = {
    "router_id": "10.77.0.11", "local_as": 65001,
    "prefixes": {"ipv4": ["192.0.2.0/24"], "ipv6": ["2001:db8:1::/48"]},
    "neighbors": [
        {"name": "rtr2_v4", "address": "10.77.0.12", "remote_as": 65002, "description": "rtr2 over IPv4", "import": ["198.51.100.0/24"]},
        {"name": "rtr2_v6", "address": "fd77::12", "remote_as": 65002, "description": "rtr2 over IPv6", "import": ["2001:db8:2::/48"]},
    ],
}

CASES = [
    pytest.param(
        {'router_id': '10.77.0.11',
         'local_as': 65001,
         'prefixes': {'ipv4': ['192.0.2.0/24'], 'ipv6': ['2001:db8:1::/48']},
         'neighbors': [{'name': 'rtr2_v4', 'address': '10.77.0.12', 'remote_as': 65002, 'import': ['198.51.100.0/24']},
                       {'name': 'rtr2_v6', 'address': 'fd77::12', 'remote_as': 65002, 'import': ['2001:db8:2::/48']}]},
        {},
        [],
        id='the_lab_data'),
    pytest.param(
        {'router_id': '10.77.0.300',
         'local_as': 65001,
         'neighbors': [{'name': 'rtr2_v4', 'address': '10.77.0.12', 'remote_asn': 65002},
                       {'name': 'rtr2_v6', 'address': 'fd77::12', 'remote_as': 65002, 'import': ['198.51.100.0/24']}]},
        {},
        ['bgp.router_id: "10.77.0.300" is not an IPv4 address',
         'bgp.neighbors[0] (rtr2_v4).remote_asn: unknown key (known: name, address, remote_as, description, enabled, '
         'password, multihop, source_address, import, export)',
         "bgp.neighbors[0] (rtr2_v4).remote_as: missing (the neighbour's AS number)",
         'bgp.neighbors[1] (rtr2_v6).import[0]: "198.51.100.0/24" is IPv4, the rule is for IPv6 routes'],
        id='the_documented_example'),
    pytest.param(
        'text',
        {},
        ['bgp: must be a mapping, got "text"'],
        id='a_string'),
    pytest.param(
        None,
        {},
        ['bgp: must be a mapping, got null'],
        id='null'),
    pytest.param(
        {},
        {},
        ["bgp.router_id: missing (an IPv4 address, usually one of the router's own)",
         'bgp.local_as: missing (the AS number of this router)'],
        id='empty'),
    pytest.param(
        {'router_id': 'fd00::1', 'local_as': 23456, 'colour': 1},
        {},
        ['bgp.colour: unknown key (known: router_id, local_as, prefixes, neighbors, import, export, filters)',
         'bgp.router_id: "fd00::1" is not an IPv4 address',
         'bgp.local_as: 23456 is not an AS number (1-4294967294, not 23456)'],
        id='unknown_key_ipv6_id_reserved_as'),
    pytest.param(
        {'router_id': '1.2.3.4', 'local_as': '4294967295'},
        {},
        ['bgp.local_as: "4294967295" is not an AS number (1-4294967294, not 23456)'],
        id='as_too_big'),
    pytest.param(
        {'router_id': '1.2.3.4', 'local_as': True},
        {},
        ['bgp.local_as: true is not an AS number (1-4294967294, not 23456)'],
        id='as_boolean'),
    pytest.param(
        {'router_id': '1.2.3.4', 'local_as': '65001', 'filters': ['x']},
        {},
        ['bgp.filters: must be a mapping of filter name to BIRD filter code, got ["x"]'],
        id='filters_not_a_mapping'),
    pytest.param(
        {'router_id': '1.2.3.4',
         'local_as': 1,
         'filters': {'locus_x': 'accept;', '9x': '', 'ok': None, 'fine': 'accept;'}},
        {},
        ['bgp.filters.locus_x: a filter name must be a BIRD symbol ([A-Za-z_][A-Za-z0-9_]*, at most 64 characters, not '
         'starting with locus_)',
         'bgp.filters.9x: a filter name must be a BIRD symbol ([A-Za-z_][A-Za-z0-9_]*, at most 64 characters, not '
         'starting with locus_)',
         'bgp.filters.9x: must be BIRD filter code (a non-empty string), got ""',
         'bgp.filters.ok: must be BIRD filter code (a non-empty string), got null'],
        id='bad_filter_names_and_bodies'),
    pytest.param(
        {'router_id': '1.2.3.4', 'local_as': 1, 'prefixes': ['10.0.0.0/8']},
        {},
        ['bgp.prefixes: must be a mapping with ipv4 and/or ipv6 lists, got ["10.0.0.0/8"]'],
        id='prefixes_not_a_mapping'),
    pytest.param(
        {'router_id': '1.2.3.4',
         'local_as': 1,
         'prefixes': {'ipv5': [],
                      'ipv4': '10.0.0.0/8',
                      'ipv6': ['10.0.0.0/8', '2001:db8::1/64', 'x', 5, '2001:db8::/32', '2001:db8::/32']}},
        {},
        ['bgp.prefixes.ipv5: unknown address family (ipv4, ipv6)',
         'bgp.prefixes.ipv4: must be a list of networks, got "10.0.0.0/8"',
         'bgp.prefixes.ipv6[0]: "10.0.0.0/8" is IPv4 - list it under bgp.prefixes.ipv4',
         'bgp.prefixes.ipv6[1]: "2001:db8::1/64" is not a network (NET/LEN with the host bits zero)',
         'bgp.prefixes.ipv6[2]: "x" is not a network (NET/LEN with the host bits zero)',
         'bgp.prefixes.ipv6[3]: 5 is not a network (NET/LEN with the host bits zero)',
         'bgp.prefixes.ipv6: 2001:db8::/32 is listed more than once'],
        id='prefix_families_and_networks'),
    pytest.param(
        {'router_id': '1.2.3.4',
         'local_as': 1,
         'prefixes': {'ipv4': ['10.0.0.0/8', '10.0.0.0/8', '10.0.0.0/8', '10.1.0.0/16']}},
        {},
        ['bgp.prefixes.ipv4: 10.0.0.0/8 is listed more than once'],
        id='prefix_repeated'),
    pytest.param(
        {'router_id': '1.2.3.4',
         'local_as': 1,
         'import': 'all',
         'export': {'ipv4': 'own', 'ipv6': 'mine', 'ipx': 'all'}},
        {},
        ['bgp.import: must be a mapping of address family (ipv4, ipv6) to a rule, got "all"',
         'bgp.export.ipv6: "mine" is neither all, none, own nor a filter of bgp.filters (none defined)',
         'bgp.export.ipx: unknown address family (ipv4, ipv6)'],
        id='default_rules'),
    pytest.param(
        {'router_id': '1.2.3.4',
         'local_as': 1,
         'filters': {'f1': 'accept;', 'a': 'reject;'},
         'import': {'ipv4': 'own', 'ipv6': 'zz'},
         'export': {'ipv4': [], 'ipv6': 5}},
        {},
        ["bgp.import.ipv4: 'own' (this router's prefixes) is an export rule; imports take all, none, a filter name or "
         'a list of prefixes',
         'bgp.import.ipv6: "zz" is neither all, none nor a filter of bgp.filters (a, f1)',
         'bgp.export.ipv4: an empty prefix list would match nothing - say none',
         'bgp.export.ipv6: 5 is not a rule (all, none, own, a filter name or a list of prefixes)'],
        id='default_rules_with_filters'),
    pytest.param(
        {'router_id': '1.2.3.4',
         'local_as': 1,
         'import': {'ipv4': ['10.0.0.0/8+',
                             '10.0.0.0/8{16,24}',
                             '10.0.0.1/8',
                             'fd00::/8-',
                             'bad',
                             7,
                             '10.0.0.0/8{1,2']}},
        {},
        ['bgp.import.ipv4[2]: "10.0.0.1/8" is not a network (NET/LEN with the host bits zero)',
         'bgp.import.ipv4[3]: "fd00::/8-" is IPv6, the rule is for IPv4 routes',
         'bgp.import.ipv4[4]: "bad" is not a prefix pattern (NET/LEN, optionally followed by +, - or {MIN,MAX})',
         'bgp.import.ipv4[5]: 7 is not a prefix pattern (NET/LEN, optionally followed by +, - or {MIN,MAX})',
         'bgp.import.ipv4[6]: "10.0.0.0/8{1,2" is not a prefix pattern (NET/LEN, optionally followed by +, - or '
         '{MIN,MAX})'],
        id='prefix_patterns'),
    pytest.param(
        {'router_id': '1.2.3.4', 'local_as': 1, 'neighbors': {'a': 1}},
        {},
        ['bgp.neighbors: must be a list, got {"a": 1}'],
        id='neighbors_not_a_list'),
    pytest.param(
        {'router_id': '1.2.3.4',
         'local_as': 1,
         'neighbors': ['x',
                       {'name': 5},
                       {'name': 'locus_a', 'address': '1.2.3', 'remote_as': 0},
                       {'name': 'ok',
                        'address': '10.0.0.1',
                        'remote_as': '65001',
                        'description': 'a "q"',
                        'enabled': 'yes',
                        'password': '',
                        'multihop': 256,
                        'source_address': 'fd00::1',
                        'import': 'own',
                        'export': ['fd00::/8']},
                       {'name': 'ok2',
                        'address': 'fd00::2',
                        'remote_as': 1,
                        'description': 'fine',
                        'enabled': False,
                        'password': 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
                        'multihop': True,
                        'source_address': 'fd00::1',
                        'import': 'nofilter',
                        'export': 'own'},
                       {'name': 'ok', 'address': '10.0.0.1', 'remote_as': 1, 'multihop': 0, 'password': None},
                       {'name': 'ok3', 'address': 'FD00::2', 'remote_as': 1, 'multihop': 3, 'description': None},
                       {'address': '10.0.0.9'}]},
        {},
        ['bgp.neighbors[0]: must be a mapping (name, address, remote_as, ...), got "x"',
         'bgp.neighbors[1].name: 5 is not a BIRD symbol ([A-Za-z_][A-Za-z0-9_]*, at most 64 characters, not starting '
         'with locus_)',
         "bgp.neighbors[1].address: missing (the neighbour's IPv4 or IPv6 address)",
         "bgp.neighbors[1].remote_as: missing (the neighbour's AS number)",
         'bgp.neighbors[2] (locus_a).name: "locus_a" is not a BIRD symbol ([A-Za-z_][A-Za-z0-9_]*, at most 64 '
         'characters, not starting with locus_)',
         'bgp.neighbors[2] (locus_a).address: "1.2.3" is not an IP address',
         'bgp.neighbors[2] (locus_a).remote_as: 0 is not an AS number (1-4294967294, not 23456)',
         'bgp.neighbors[3] (ok).description: must be a string without double quotes, backslashes or line breaks',
         'bgp.neighbors[3] (ok).enabled: must be true or false, got "yes"',
         'bgp.neighbors[3] (ok).password: must be 1-80 characters without double quotes, backslashes or line breaks '
         '(TCP-MD5 key; value not shown)',
         'bgp.neighbors[3] (ok).multihop: must be true, false (directly connected) or a TTL of 1-255, got 256',
         'bgp.neighbors[3] (ok).source_address: "fd00::1" is not an IPv4 address like the neighbour\'s',
         "bgp.neighbors[3] (ok).import: 'own' (this router's prefixes) is an export rule; imports take all, none, a "
         'filter name or a list of prefixes',
         'bgp.neighbors[3] (ok).export[0]: "fd00::/8" is IPv6, the rule is for IPv4 routes',
         'bgp.neighbors[4] (ok2).password: must be 1-80 characters without double quotes, backslashes or line breaks '
         '(TCP-MD5 key; value not shown)',
         'bgp.neighbors[4] (ok2).import: "nofilter" is neither all, none nor a filter of bgp.filters (none defined)',
         'bgp.neighbors[5] (ok).multihop: must be true, false (directly connected) or a TTL of 1-255, got 0',
         'bgp.neighbors[6] (ok3).description: must be a string without double quotes, backslashes or line breaks',
         'bgp.neighbors[7].name: missing (the BIRD protocol name of the session)',
         "bgp.neighbors[7].remote_as: missing (the neighbour's AS number)",
         'bgp.neighbors: the name ok is used more than once (it names the BIRD protocol)',
         'bgp.neighbors: the address 10.0.0.1 is used more than once',
         'bgp.neighbors: the address fd00::2 is used more than once'],
        id='neighbour_keys'),
    pytest.param(
        {'router_id': '10.77.0.11',
         'local_as': 65001,
         'prefixes': {'ipv4': ['192.0.2.0/24'], 'ipv6': ['2001:db8:1::/48']},
         'neighbors': [{'name': 'rtr2_v4', 'address': '10.77.0.12', 'remote_as': 65002, 'import': ['198.51.100.0/24']},
                       {'name': 'rtr2_v6', 'address': 'fd77::12', 'remote_as': 65002, 'import': ['2001:db8:2::/48']}]},
        {'passwords': 'x'},
        ['bird2_passwords: must be a mapping of neighbour name to password'],
        id='passwords_not_a_mapping'),
    pytest.param(
        {'router_id': '10.77.0.11',
         'local_as': 65001,
         'prefixes': {'ipv4': ['192.0.2.0/24'], 'ipv6': ['2001:db8:1::/48']},
         'neighbors': [{'name': 'rtr2_v4', 'address': '10.77.0.12', 'remote_as': 65002, 'import': ['198.51.100.0/24']},
                       {'name': 'rtr2_v6', 'address': 'fd77::12', 'remote_as': 65002, 'import': ['2001:db8:2::/48']}]},
        {'passwords': {'nobody': 'x', 'rtr2_v4': 'a"b', 'rtr2_v6': 'good'}},
        ['bird2_passwords.nobody: no neighbour of that name in bgp.neighbors',
         'bird2_passwords.rtr2_v4: must be 1-80 characters without double quotes, backslashes or line breaks (value '
         'not shown)'],
        id='passwords_by_name'),
    pytest.param(
        {'router_id': '10.77.0.11',
         'local_as': 65001,
         'prefixes': {'ipv4': ['192.0.2.0/24'], 'ipv6': ['2001:db8:1::/48']},
         'neighbors': [{'name': 'rtr2_v4', 'address': '10.77.0.12', 'remote_as': 65002, 'import': ['198.51.100.0/24']},
                       {'name': 'rtr2_v6', 'address': 'fd77::12', 'remote_as': 65002, 'import': ['2001:db8:2::/48']}]},
        {'confirm_sessions': 'some', 'confirm_wait': 'x'},
        ['bird2_confirm_sessions: "some" is not one of established, all, none',
         'bird2_confirm_wait, bird2_configure_timeout: must be numbers of seconds'],
        id='confirm_settings'),
    pytest.param(
        {'router_id': '10.77.0.11',
         'local_as': 65001,
         'prefixes': {'ipv4': ['192.0.2.0/24'], 'ipv6': ['2001:db8:1::/48']},
         'neighbors': [{'name': 'rtr2_v4', 'address': '10.77.0.12', 'remote_as': 65002, 'import': ['198.51.100.0/24']},
                       {'name': 'rtr2_v6', 'address': 'fd77::12', 'remote_as': 65002, 'import': ['2001:db8:2::/48']}]},
        {'configure_timeout': 80},
        ['bird2_configure_timeout: 80 s leaves no time to confirm after waiting bird2_confirm_wait (60 s) for the '
         'sessions: give it at least 90'],
        id='timeout_too_short'),
    pytest.param(
        {'router_id': '10.77.0.11',
         'local_as': 65001,
         'prefixes': {'ipv4': ['192.0.2.0/24'], 'ipv6': ['2001:db8:1::/48']},
         'neighbors': [{'name': 'rtr2_v4', 'address': '10.77.0.12', 'remote_as': 65002, 'import': ['198.51.100.0/24']},
                       {'name': 'rtr2_v6', 'address': 'fd77::12', 'remote_as': 65002, 'import': ['2001:db8:2::/48']}]},
        {'confirm_wait': '10', 'configure_timeout': '40'},
        [],
        id='numbers_as_strings'),
    pytest.param(
        {'router_id': '1.2.3.4',
         'local_as': 1,
         'neighbors': [{'name': 'a', 'address': '10.0.0.1', 'remote_as': 2, 'import': []}]},
        {},
        ['bgp.neighbors[0] (a).import: an empty prefix list would match nothing - say none'],
        id='empty_prefix_list'),
]


@pytest.mark.parametrize(("bgp", "settings", "expected"), CASES)
def test_every_problem_is_named_with_the_key_and_the_reason_as_before(bgp, settings, expected):
    assert model.problems(bgp, {**DEFAULTS, **settings}) == expected


def test_missing_data_and_the_filter_message_name_the_host():
    assert model.problems() == ["bgp: not defined - the role needs the router data (router_id, local_as, prefixes, neighbors)"]
    with pytest.raises(AnsibleFilterError) as exc:
        bird_filter.bird2_model({"router_id": "10.77.0.300", "local_as": 65001}, "rtr1", DEFAULTS)
    assert str(exc.value) == ('locus.infra.bird2: rtr1: 1 problem(s) in the BGP data, nothing was changed: '
                              'bgp.router_id: "10.77.0.300" is not an IPv4 address')
    with pytest.raises(AnsibleFilterError, match="settings must be a mapping"):
        bird_filter.bird2_problems(LAB, ["not", "a", "mapping"])


def test_a_password_is_never_shown_in_a_problem_or_the_model():
    secret = 'pw"with-quote-Zq8'
    bgp = {**LAB, "neighbors": [{**LAB["neighbors"][0], "password": secret}, LAB["neighbors"][1]]}
    found = model.problems(bgp, {**DEFAULTS, "passwords": {"rtr2_v6": secret + "\\"}})
    assert len(found) == 2 and not any("Zq8" in p for p in found)
    good = model.normalise({**LAB, "neighbors": [{**LAB["neighbors"][0], "password": "fine-Zq8"}, LAB["neighbors"][1]]},
                           {**DEFAULTS, "passwords": {"rtr2_v6": "also-Zq8"}})
    assert "Zq8" not in repr(good)
    assert [n["password_set"] for n in good["neighbors"]] == [True, True]


def test_the_lab_data_gets_every_default():
    assert bird_filter.bird2_model(LAB, "rtr1", DEFAULTS) == {
        "router_id": "10.77.0.11", "local_as": 65001,
        "prefixes": {"ipv4": ["192.0.2.0/24"], "ipv6": ["2001:db8:1::/48"]},
        "filters": {},
        "neighbors": [
            {"name": "rtr2_v4", "address": "10.77.0.12", "family": "ipv4", "remote_as": 65002, "description": "rtr2 over IPv4",
             "enabled": True, "multihop": None, "source_address": None, "import": ["198.51.100.0/24"], "export": "own",
             "password_set": False},
            {"name": "rtr2_v6", "address": "fd77::12", "family": "ipv6", "remote_as": 65002, "description": "rtr2 over IPv6",
             "enabled": True, "multihop": None, "source_address": None, "import": ["2001:db8:2::/48"], "export": "own",
             "password_set": False},
        ],
    }


def test_per_family_defaults_numbers_as_strings_and_disabled_sessions():
    # The same data the Jinja model (model.j2) turned into this result.
    bgp = {"router_id": "10.77.0.11", "local_as": "65001", "prefixes": {"ipv4": ["192.0.2.0/24"]}, "filters": {"f": "accept;"},
           "import": {"ipv6": "f"}, "export": {"ipv4": "all"},
           "neighbors": [{"name": "rtr2_v4", "address": "10.77.0.12", "remote_as": 65002, "import": ["198.51.100.0/24"],
                          "password": "pw", "multihop": 2},
                         {"name": "rtr2_v6", "address": "fd77::12", "remote_as": "65002", "enabled": False, "description": "d",
                          "source_address": "fd77::11", "multihop": False},
                         {"name": "r3", "address": "10.0.0.3", "remote_as": 3}]}
    got = model.normalise(bgp, {**DEFAULTS, "passwords": {"rtr2_v6": "x"}})
    assert got["local_as"] == 65001 and got["prefixes"] == {"ipv4": ["192.0.2.0/24"], "ipv6": []}
    v4, v6, r3 = got["neighbors"]
    assert (v4["import"], v4["export"], v4["multihop"], v4["password_set"]) == (["198.51.100.0/24"], "all", 2, True)
    assert (v6["import"], v6["export"], v6["remote_as"], v6["enabled"], v6["multihop"], v6["password_set"]) == ("f", "own", 65002, False, False, True)
    assert (r3["import"], r3["export"], r3["description"], r3["password_set"]) == ("all", "all", "", False)
    assert bird_filter.bird2_sessions(got) == ["rtr2_v4", "r3"]


def test_the_role_check_in_ansible_gives_the_documented_message(tmp_path):
    """The role's first tasks through ansible-playbook: the assert names the host and every problem."""
    root = Path(__file__).resolve().parents[2]
    playbook = tmp_path / "check.yml"
    playbook.write_text(
        "- hosts: rtr1\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role:\n        name: locus.infra.bird2\n        tasks_from: main\n"
        "      vars:\n        bgp: {router_id: 10.77.0.300, local_as: 65001, neighbors: [{name: rtr2_v4, address: 10.77.0.12, remote_asn: 65002}]}\n")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    rtr1: {ansible_connection: local}\n")
    env = {"ANSIBLE_CONFIG": str(root / "ansible.cfg"), "LOCUS_STATE_DIR": str(tmp_path / "state"), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable, "HOME": str(tmp_path)}
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook)],
                         capture_output=True, text=True, env=env, cwd=root, check=False)
    assert run.returncode == 2, run.stdout + run.stderr
    assert ("locus.infra.bird2: rtr1: 3 problem(s) in the BGP data, nothing was changed: "
            'bgp.router_id: "10.77.0.300" is not an IPv4 address; bgp.neighbors[0] (rtr2_v4).remote_asn: unknown key') in run.stdout
    assert "Install the BIRD 2 package" not in run.stdout  # stopped before touching the host


def test_the_change_review_never_sees_a_password_in_the_module_arguments():
    args = {"secret_files": [{"path": "locus/secrets.conf",
                              "content": 'define locus_password_rtr2_v4 = "lab-md5-v4";\ndefine locus_password_x = "Zq8#kk2";\n'}]}
    assert "lab-md5" not in repr(changes_callback._safe(args)) and "Zq8" not in repr(changes_callback._safe(args))


def test_ansible_doc_works_for_the_bird_plugins_and_role():
    bin_dir = Path(sys.executable).parent
    for args in (["locus.infra.bird_tree"], ["-t", "filter", "locus.infra.bird2_problems"], ["-t", "filter", "locus.infra.bird2_model"],
                 ["-t", "filter", "locus.infra.bird2_sessions"], ["-t", "role", "locus.infra.bird2"]):
        proc = subprocess.run([str(bin_dir / "ansible-doc"), *args], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[2], check=False)
        assert proc.returncode == 0 and args[-1] in proc.stdout, (args, proc.stderr)
