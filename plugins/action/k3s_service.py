# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.k3s_service: the emergency halt check, then the module itself.

Starting and restarting K3s are changes and are refused while locus.infra is halted;
``state: query`` only reads and keeps working (verify.yml, the upgrade's quorum checks).
"""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils._action import HaltGuardedModule


class ActionModule(HaltGuardedModule):
    READ_ONLY_ARGS = {"state": {"query"}}
