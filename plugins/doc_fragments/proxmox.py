# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared options of the locus.infra Proxmox VE modules: API connection and task waiting."""

from __future__ import annotations


class ModuleDocFragment:
    # Connection and authentication (locus.infra.proxmox).
    DOCUMENTATION = r"""
options:
  api_host:
    description:
      - Proxmox VE API host (any node of the cluster), optionally with C(:port).
      - Defaults to the E(PROXMOX_HOST) environment variable.
    type: str
    required: true
  api_port:
    description:
      - API port. Defaults to E(PROXMOX_PORT), then 8006.
    type: int
  api_user:
    description:
      - User C(user@realm) for password login, or the owner of a token given without it.
      - Defaults to E(PROXMOX_USER).
    type: str
  api_password:
    description:
      - Password of O(api_user). Prefer an API token.
      - Defaults to E(PROXMOX_PASSWORD).
    type: str
  api_token_id:
    description:
      - API token id, C(user@realm!tokenname) (or only C(tokenname) together with O(api_user)).
      - Defaults to E(PROXMOX_TOKEN_ID).
    type: str
  api_token_secret:
    description:
      - Secret (UUID) of the API token. Never logged.
      - Defaults to E(PROXMOX_TOKEN_SECRET).
    type: str
  validate_certs:
    description:
      - Verify the TLS certificate of the API. Defaults to E(PROXMOX_VALIDATE_CERTS), then V(true).
      - Rather than turning this off for the self-signed default certificate, set O(ca_path)
        to the cluster CA (C(/etc/pve/pve-root-ca.pem) on any node).
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA(s) to trust for the API certificate. Defaults to E(PROXMOX_CA_PATH).
    type: path
  api_timeout:
    description:
      - Seconds to wait for one HTTP response.
    type: int
    default: 30
  api_retries:
    description:
      - How often a request (or a task that died on a lock before doing anything) is retried.
      - Only retryable failures are retried, with jittered exponential backoff (0.5 s doubling,
        at most 8 s) - lock contention (C(VM 101 is locked (backup)), C(can't lock file ... got timeout)),
        502/503/504/596/599 and connection failures for GET/PUT/DELETE, and 595 (the request
        never reached the node) for any method. Everything else fails at once.
    type: int
    default: 5
requirements:
  - requests >= 2.31 (on the controller)
notes:
  - The modules talk to the API from the controller; run them with C(delegate_to=localhost)
    (or on a host that reaches the API), not on the managed VM.
  - Secrets (O(api_password), O(api_token_secret)) are never logged or returned.
"""

    # Waiting for Proxmox tasks (locus.infra.proxmox.wait).
    WAIT = r"""
options:
  wait_timeout:
    description:
      - Wall-clock seconds to wait for one Proxmox task (clone, start, resize, ...).
      - Waiting polls the task status with a growing interval (0.25 s, x1.5, at most 5 s) and
        stops at the first terminal state; a failed task fails the module at once with its exit
        status and the last lines of its task log, long before the timeout.
      - A task that ends with C(WARNINGS) counts as success; its warning lines are returned
        and shown as Ansible warnings.
    type: int
    default: 600
"""
