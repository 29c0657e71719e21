#!/usr/bin/python
# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: proxmox_vm
short_description: Create, clone, configure, power and remove Proxmox VE VMs with honest check and diff mode
version_added: 0.1.0
description:
  - Makes one QEMU VM on a Proxmox VE cluster look like its description -- clone it from a template
    (full or linked, template by name or VMID) or create it, set CPU, memory, disks, NICs, cloud-init,
    tags, pool and description, grow disks, and start, stop, restart or remove it.
  - Plans before it acts. It reads what exists, normalises both sides (URL-encoded SSH keys, 0/1 booleans,
    NIC strings with generated MACs, C(memory) as C(current=N), drive sizes, tag separators) and derives
    the exact actions. C(changed) comes from those real differences only, so a second run reports no
    change; check mode returns the same plan without changing anything; diff mode shows the config keys
    that change.
  - Long operations are Proxmox tasks; the module waits for them on a wall clock and stops at the first
    terminal state. A failed task fails the module with its exit status and the last lines of its log.
  - Disks only grow. A smaller size than the current one is refused before anything is changed.
  - The VM is found by O(vmid) when given, else by O(name) (which must then be unique in the cluster).
    A VMID that belongs to a VM of another name is never taken over.
  - Run it on the controller (C(delegate_to=localhost)); it talks to the Proxmox API with proxmoxer.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.attributes
  - locus.infra.attributes.controller
  - locus.infra.proxmox
  - locus.infra.proxmox.wait
options:
  name:
    description:
      - Name of the VM (a DNS name). Identifies the VM when O(vmid) is not given.
    type: str
    required: true
  locus_vm:
    description:
      - The C(locus_vm) record of the NetBox data model (see C(docs/netbox.md)); the role
        C(locus.infra.proxmox_vm) passes the host var as it is.
      - Fills the options of this module that are not given explicitly (explicit options win;
        keys that are null are ignored) -- C(vmid), C(node), C(memory), C(storage), C(pool), C(tags),
        C(onboot), C(agent), C(sockets), C(cpu_type) map 1:1; C(vcpus) becomes O(cores) (divided by
        O(sockets)); C(template) becomes O(clone.source); C(disk) (GiB, or a list of sizes or disk dicts)
        becomes O(disks); C(network) (C(bridge), C(vlan), C(model), C(firewall), C(mac)) becomes O(nics)
        and its C(ipv4)/C(gateway4)/C(ipv6)/C(gateway6) become O(cloud_init.ipconfig) (DHCP on
        C(net0) without addresses); C(cloud_init) (C(user), C(ssh_keys), C(nameservers), C(searchdomain), ...)
        becomes O(cloud_init).
      - Record keys the module does not use are reported as warnings.
    type: dict
  vmid:
    description:
      - VMID of the VM. When not given, an existing VM is found by O(name) and a new one gets the next
        free VMID (C(cluster/nextid)); if a parallel run takes that VMID first, the next one is used.
    type: int
  node:
    description:
      - Node to create the VM on. Required to create a VM.
      - An existing VM on another node is managed where it is (with a warning), unless O(state=migrated) moves it there.
    type: str
  state:
    description:
      - V(present) makes the VM exist with the given settings and leaves its power state alone.
      - V(started) also starts it; V(stopped) shuts it down (ACPI, see O(shutdown_timeout) and O(force_stop)).
      - V(restarted) reboots a running VM (which also applies pending changes) or starts a stopped one;
        it always reports a change.
      - V(absent) removes the VM and its disks (a running VM is stopped first).
      - V(migrated) moves an existing VM to O(node) - online (live) when it runs, offline when it is stopped, with its
        local disks - and waits for the migration task; nothing else about the VM changes. See
        C(playbooks/proxmox_evacuate.yml) to empty a node one VM at a time behind the guard.
    type: str
    choices: [present, started, stopped, restarted, absent, migrated]
    default: present
  clone:
    description:
      - Create the VM as a clone of a template (or VM). Ignored for an existing VM.
    type: dict
    suboptions:
      source:
        description:
          - Name or VMID of the template. A name must be unique among templates.
        type: str
        required: true
      full:
        description:
          - V(true) for a full clone (independent copy, may go to another O(storage)),
            V(false) for a linked clone of a template (fast, shares the base image; O(storage) not allowed).
        type: bool
        default: true
  storage:
    description:
      - Storage for a full clone, for new disks without their own storage and for a new cloud-init drive.
    type: str
  pool:
    description:
      - Resource pool of the VM. An existing VM is moved to it.
    type: str
  cores:
    description: CPU cores per socket.
    type: int
  sockets:
    description: CPU sockets.
    type: int
  vcpus:
    description: Number of hot-plugged vCPUs (at most cores x sockets).
    type: int
  cpu_type:
    description:
      - CPU model (C(host), C(x86-64-v2-AES), C(x86-64-v3), ...). Other settings of the C(cpu) option
        (flags) are kept.
    type: str
  memory:
    description: Memory in MiB.
    type: int
  balloon:
    description: Minimum memory in MiB for the balloon device; V(0) disables ballooning.
    type: int
  disks:
    description:
      - Disks of the VM. Existing disks grow to O(disks[].size) (never shrink); missing ones are created.
      - Disks not listed are left alone.
    type: list
    elements: dict
    suboptions:
      slot:
        description:
          - Bus slot, C(scsi0)..C(scsi30), C(virtio0)..C(virtio15), C(sata0)..C(sata5), C(ide0)..C(ide3).
          - Defaults to C(scsiN), N being the position in the list.
        type: str
      size:
        description:
          - Size; a number is GiB, a string may carry a unit (C(32G), C(512M), C(1T)).
        type: raw
        required: true
      storage:
        description: Storage of a new disk (defaults to O(storage)).
        type: str
      options:
        description:
          - "Drive options to set, for example C({discard: on, ssd: true, iothread: true, cache: writeback})."
        type: dict
  nics:
    description:
      - Network devices C(net0), C(net1), ... in this order. The MAC Proxmox generated is kept unless
        O(nics[].mac) is given. NICs beyond the list are left alone.
    type: list
    elements: dict
    suboptions:
      bridge:
        description: Bridge to attach to (C(vmbr0)).
        type: str
        required: true
      vlan:
        description: VLAN tag (1-4094). Not given = untagged (an existing tag is removed).
        type: int
      model:
        description: NIC model.
        type: str
        default: virtio
        choices: [virtio, e1000, e1000e, rtl8139, vmxnet3]
      mac:
        description: MAC address to use (else the existing or a generated one is kept).
        type: str
      firewall:
        description: Enable the Proxmox firewall on this NIC.
        type: bool
      mtu:
        description: MTU (virtio only; 1 = the bridge's MTU).
        type: int
      rate:
        description: Rate limit in MB/s.
        type: float
      queues:
        description: Number of packet queues (virtio multiqueue).
        type: int
      link_down:
        description: Disconnect the NIC.
        type: bool
  cloud_init:
    description:
      - Cloud-init settings. A cloud-init drive is added (in O(cloud_init.drive_slot)) when the VM has none.
    type: dict
    suboptions:
      user:
        description: Default user.
        type: str
      password:
        description: Password of the default user (see O(cloud_init.password_update)). Never logged.
        type: str
      password_update:
        description:
          - V(on_create) sets the password only when the VM is created (Proxmox never returns it, so it
            cannot be compared); V(always) sets it on every run and so always reports a change.
        type: str
        choices: [on_create, always]
        default: on_create
      ssh_keys:
        description:
          - Public SSH keys. Compared as a set of keys, whatever URL encoding Proxmox holds them in.
        type: list
        elements: str
      ipconfig:
        description:
          - One entry per NIC (C(ipconfig0) for C(net0), ...); a string C(ip=10.0.0.5/24,gw=10.0.0.1) or a
            dict with C(ip), C(gw), C(ip6), C(gw6) (C(dhcp) / C(auto) allowed).
        type: list
        elements: raw
      nameserver:
        description: DNS servers, in order.
        type: list
        elements: str
      searchdomain:
        description: DNS search domains, in order.
        type: list
        elements: str
      type:
        description: Cloud-init datasource format.
        type: str
        choices: [nocloud, configdrive2]
      upgrade:
        description: Let cloud-init upgrade packages on first boot (C(ciupgrade), Proxmox VE 8+).
        type: bool
      storage:
        description: Storage for a new cloud-init drive (defaults to O(storage), then the storage of the first disk).
        type: str
      drive_slot:
        description: Slot for a new cloud-init drive.
        type: str
        default: ide2
  tags:
    description:
      - Tags of the VM (compared case-insensitively as a set). V([]) removes all tags.
    type: list
    elements: str
  description:
    description:
      - Notes of the VM. Trailing whitespace is not significant (Proxmox strips it).
    type: str
  ref_tag:
    description:
      - A locus REF-tag (C(LOCUS-DEPLOY20250908-001)) kept in the last line of the description,
        after C(locus-ref:). It is written when the VM is created or changed, and is not by itself a reason to
        change the VM -- so the description names the deployment that last changed the VM.
    type: str
  onboot:
    description: Start the VM when its node boots.
    type: bool
  agent:
    description: Enable the QEMU guest agent device (other C(agent) settings are kept).
    type: bool
  extra_config:
    description:
      - Further Proxmox config options to set verbatim, for example C(ostype=l26) or C(scsihw=virtio-scsi-single).
        Keys that have a module option above are refused.
    type: dict
  shutdown_timeout:
    description: Seconds the guest gets to shut down for O(state=stopped).
    type: int
    default: 120
  force_stop:
    description: Stop the VM hard when the guest does not shut down within O(shutdown_timeout).
    type: bool
    default: false
  purge:
    description: With O(state=absent), also remove the VM from backup jobs, replication and HA.
    type: bool
    default: false
  node_concurrency:
    description:
      - At most this many runs of this module change VMs on the same node at the same time (on this
        controller, across forks and playbooks); V(0) for no limit. The role uses it to throttle per node.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    details: Reads the cluster and returns the planned actions, changes and predicted VMID; changes nothing.
  diff_mode:
    support: full
    details: Shows the config keys that change (SSH keys decoded, passwords hidden), disk sizes and power state.
seealso:
  - module: locus.infra.proxmox_node_info
  - name: Proxmox VE API viewer
    description: The endpoints the module uses.
    link: https://pve.proxmox.com/pve-docs/api-viewer/
"""

EXAMPLES = r"""
- name: Web VM from the Debian 12 cloud template, started
  locus.infra.proxmox_vm:
    name: web1
    node: pve1
    clone:
      source: debian-12-cloud
    storage: local-lvm
    pool: prod
    cores: 2
    memory: 4096
    disks:
      - size: 32
        options: {discard: "on", ssd: true}
    nics:
      - bridge: vmbr0
        vlan: 20
    cloud_init:
      user: debian
      ssh_keys: "{{ lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub') | split('\n') }}"
      ipconfig:
        - ip=10.20.0.21/24,gw=10.20.0.1
      nameserver: [10.20.0.1]
      searchdomain: [lab.example]
    tags: [web, prod]
    onboot: true
    agent: true
    ref_tag: "{{ deploy.ref_tag }}"
    state: started
  delegate_to: localhost
  register: vm

- name: What would change (nothing is changed)
  locus.infra.proxmox_vm:
    name: web1
    memory: 8192
  check_mode: true
  diff: true
  delegate_to: localhost

- name: Remove it
  locus.infra.proxmox_vm:
    name: web1
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
vmid:
  description: VMID of the VM (in check mode for a new VM the VMID it would most likely get).
  returned: success, unless O(state=absent) and the VM did not exist
  type: int
  sample: 101
vmid_predicted:
  description: V(true) when O(vmid) was not given and check mode could only predict the VMID.
  returned: when a VM is (to be) created
  type: bool
name:
  description: Name of the VM.
  returned: always
  type: str
  sample: web1
node:
  description: Node the VM is on.
  returned: success
  type: str
  sample: pve1
status:
  description: Power state after the run (V(running), V(stopped), V(absent)).
  returned: success
  type: str
  sample: running
created:
  description: Whether the VM was (or in check mode would be) created.
  returned: always
  type: bool
actions:
  description: What was done (or would be done in check mode), in order.
  returned: success
  type: list
  elements: str
  sample: ["clone debian-12-cloud (9000) -> 101 (full)", "update config: cores, memory, net0, sshkeys",
           "resize scsi0 4 GiB -> 32 GiB", "start"]
changes:
  description: Per config key (or C(scsi0.size), C(status), C(pool), C(ref_tag)) the value before and after.
  returned: success
  type: dict
  sample: {"memory": {"before": 2048, "after": 4096}}
tasks:
  description: The Proxmox tasks run, with UPID, exit status, warnings, elapsed seconds and status polls.
  returned: success
  type: list
  elements: dict
macs:
  description: MAC address per NIC.
  returned: success, when the VM exists
  type: dict
  sample: {"net0": "BC:24:11:5E:7A:01"}
ip_address:
  description: Address of C(ipconfig0) without prefix length (none for DHCP).
  returned: success, when the VM exists
  type: str
  sample: 10.20.0.21
ref_tag:
  description: REF-tag the description carries now.
  returned: success, when the VM exists
  type: str
  sample: LOCUS-DEPLOY20250908-004
pending:
  description: Config keys a running VM takes only at its next restart.
  returned: when there are such keys
  type: list
  elements: str
  sample: [cores, memory]
api_requests:
  description: Number of HTTP requests made to the Proxmox API (including retries and task polls).
  returned: success
  type: int
  sample: 9
retries:
  description: Requests or tasks that were retried, with the error and the backoff delay.
  returned: when something was retried
  type: list
  elements: dict
api_errors:
  description: Per-parameter errors of a rejected request (Proxmox parameter -> message).
  returned: failure, when Proxmox rejected parameters
  type: dict
  sample: {"ipconfig0": "invalid format - format error ipconfig0.ip: invalid format - value does not look like a valid ipv4 network configuration"}
api_request:
  description: The request that failed.
  returned: failure of an API request
  type: str
  sample: PUT /nodes/pve1/qemu/101/config
api_status:
  description: HTTP status of the failed request.
  returned: failure of an API request
  type: int
  sample: 400
task:
  description: The failed task with its exit status and the last lines of its log.
  returned: failure of a task
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.locus.infra.plugins.module_utils import _proxmox, _proxmox_vm


def argument_spec():
    spec = _proxmox.auth_argument_spec()
    spec.update(_proxmox.wait_argument_spec())
    spec.update(
        name={"type": "str", "required": True},
        locus_vm={"type": "dict"},
        vmid={"type": "int"},
        node={"type": "str"},
        state={"type": "str", "default": "present",
               "choices": ["present", "started", "stopped", "restarted", "absent", "migrated"]},
        clone={"type": "dict", "options": {"source": {"type": "str", "required": True},
                                           "full": {"type": "bool", "default": True}}},
        storage={"type": "str"},
        pool={"type": "str"},
        cores={"type": "int"},
        sockets={"type": "int"},
        vcpus={"type": "int"},
        cpu_type={"type": "str"},
        memory={"type": "int"},
        balloon={"type": "int"},
        disks={"type": "list", "elements": "dict", "options": {
            "slot": {"type": "str"},
            "size": {"type": "raw", "required": True},
            "storage": {"type": "str"},
            "options": {"type": "dict"},
        }},
        nics={"type": "list", "elements": "dict", "options": {
            "bridge": {"type": "str", "required": True},
            "vlan": {"type": "int"},
            "model": {"type": "str", "default": "virtio", "choices": ["virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"]},
            "mac": {"type": "str"},
            "firewall": {"type": "bool"},
            "mtu": {"type": "int"},
            "rate": {"type": "float"},
            "queues": {"type": "int"},
            "link_down": {"type": "bool"},
        }},
        cloud_init={"type": "dict", "options": {
            "user": {"type": "str"},
            "password": {"type": "str", "no_log": True},
            "password_update": {"type": "str", "default": "on_create", "choices": ["on_create", "always"]},
            "ssh_keys": {"type": "list", "elements": "str", "no_log": False},
            "ipconfig": {"type": "list", "elements": "raw"},
            "nameserver": {"type": "list", "elements": "str"},
            "searchdomain": {"type": "list", "elements": "str"},
            "type": {"type": "str", "choices": ["nocloud", "configdrive2"]},
            "upgrade": {"type": "bool"},
            "storage": {"type": "str"},
            "drive_slot": {"type": "str", "default": "ide2"},
        }},
        tags={"type": "list", "elements": "str"},
        description={"type": "str"},
        ref_tag={"type": "str"},
        onboot={"type": "bool"},
        agent={"type": "bool"},
        extra_config={"type": "dict"},
        shutdown_timeout={"type": "int", "default": 120},
        force_stop={"type": "bool", "default": False},
        purge={"type": "bool", "default": False},
        node_concurrency={"type": "int", "default": 0},
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_together=[("api_token_id", "api_token_secret")])
    name = module.params["name"]
    _proxmox.exit_module(
        module, f"proxmox_vm {name}",
        lambda client: _proxmox_vm.run(client, module.params, check_mode=module.check_mode, diff_mode=module._diff),
        spec_errors=_proxmox_vm.VmSpecError, name=name)


if __name__ == "__main__":
    main()
