# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options that select the locus state store (audit trail, REF-tag sequences)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  state_url:
    description:
      - PostgreSQL URL of the shared state store, C(postgresql://user:password@host:port/database).
      - Defaults to the E(LOCUS_STATE_URL) environment variable of the controller.
      - When neither is set, the embedded SQLite store under O(state_dir) is used.
      - Under AWX, set it (through a credential) so that records outlive the job container;
        with SQLite under AWX every task warns loudly.
    type: str
  state_dir:
    description:
      - Directory of the embedded SQLite store (C(locus.db)).
      - Defaults to E(LOCUS_STATE_DIR), then C(~/.local/state/locus) on the controller.
    type: path
requirements:
  - psycopg >= 3.2 on the controller, only for a PostgreSQL store (O(state_url))
notes:
  - Runs on the controller; the store is opened per task and closed afterwards.
"""

    # For plugins that read options with get_option() (callback, lookup).
    PLUGIN_OPTIONS = r"""
options:
  state_url:
    description:
      - PostgreSQL URL of the shared state store, C(postgresql://user:password@host:port/database).
      - When unset, the embedded SQLite store under O(state_dir) is used.
    type: str
    env:
      - name: LOCUS_STATE_URL
    ini:
      - section: locus
        key: state_url
  state_dir:
    description:
      - Directory of the embedded SQLite store (C(locus.db)).
    type: path
    default: ~/.local/state/locus
    env:
      - name: LOCUS_STATE_DIR
    ini:
      - section: locus
        key: state_dir
requirements:
  - psycopg >= 3.2 on the controller, only for a PostgreSQL store (O(state_url))
"""
