# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    """NetBox connection options shared by locus.infra plugins."""

    # For modules and action plugins (locus.infra.netbox_journal): environment fallbacks are
    # applied by the action plugin and documented here.
    DOCUMENTATION = r"""
options:
  url:
    description:
      - URL of NetBox, e.g. C(https://netbox.example.com) (a trailing C(/api) is accepted).
      - If not set, the environment variable E(NETBOX_API) (or E(NETBOX_URL)) is used.
    type: str
  token:
    description:
      - NetBox API token. A v1 token (40 characters, sent as C(Token <t>)), a v2 token
        C(nbt_<key>.<secret>) (sent as C(Bearer <t>)), or either value with its C(Token )/C(Bearer ) prefix.
      - If not set, the environment variable E(NETBOX_TOKEN) is used.
    type: str
  validate_certs:
    description:
      - Verify the TLS certificate of NetBox. The CA bundle can be set with E(REQUESTS_CA_BUNDLE).
      - If not set, the environment variable E(NETBOX_VALIDATE_CERTS) is used, else V(true).
    type: bool
  timeout:
    description: Seconds to wait for one HTTP response.
    type: float
    default: 30
  retries:
    description:
      - How often a read is retried (jittered exponential backoff) after a connection error,
        HTTP 429 or a 5xx answer; a write only when it cannot have been processed (connection
        failed, HTTP 429 or 503). 4xx answers are never retried.
    type: int
    default: 3
requirements:
  - requests >= 2.31 (on the controller)
"""

    # For the inventory plugin: the same options with the plugin-config environment sources.
    PLUGIN = r"""
options:
  url:
    description:
      - URL of NetBox, e.g. C(https://netbox.example.com) (a trailing C(/api) is accepted).
    type: str
    required: true
    env:
      - name: NETBOX_API
      - name: NETBOX_URL
  token:
    description:
      - NetBox API token. A v1 token (40 characters, sent as C(Token <t>)), a v2 token
        C(nbt_<key>.<secret>) (sent as C(Bearer <t>)), either value with its C(Token )/C(Bearer ) prefix,
        or a mapping with the keys C(type) (C(Token) or C(Bearer)) and C(value), as netbox.netbox.nb_inventory takes it.
    type: raw
    required: true
    env:
      - name: NETBOX_TOKEN
  validate_certs:
    description: Verify the TLS certificate of NetBox. The CA bundle can be set with E(REQUESTS_CA_BUNDLE).
    type: bool
    default: true
    env:
      - name: NETBOX_VALIDATE_CERTS
  timeout:
    description: Seconds to wait for one HTTP response.
    type: float
    default: 30
  retries:
    description:
      - How often a request is retried (jittered exponential backoff) after a connection error,
        HTTP 429 or a 5xx answer. 4xx answers are never retried.
    type: int
    default: 3
requirements:
  - requests >= 2.31 (on the controller)
"""
