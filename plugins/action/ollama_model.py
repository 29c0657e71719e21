# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.ollama_model: the emergency halt check, then the module itself.

Pulling and removing models are changes, so both states are refused while locus.infra is halted
(check mode included: a halted run predicts nothing, like every other changing plugin).
"""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils._action import HaltGuardedModule


class ActionModule(HaltGuardedModule):
    pass
